#!/usr/bin/env bash
# Issue 28's A/B of this engine against BASE's, all on one device machine (one call of at most
# 10 minutes):
#   BASE=../base bash bench/device_issue28.sh
# BASE: another tree of the same layout (the engine before the change). Both run with
# VLMEvalKit patched as the image patches it at build (bench/device_call.sh); BASE_SITE=/tmp/site-plain
# runs BASE with the wheels as released (an engine from before the lazy VLMEvalKit); BASE_ENV
# (NAME=value settings, e.g. VLMFLEET_BENCH_KEEP_ENDED_ROWS=1) applies to BASE's runs only. With
# VLMFLEET_BENCH_GPU_GIB (e.g. 80) the mix runs size their batches as on a GPU of that memory
# (bench/mix_worker.py). In this order, each JSON and log saved as it ends:
# 1. MMBench_DEV_EN at limit 100 (bench/matrix_bench.py, project arm, layout 1x2: the 13B and the
#    7B in two slots of the GPU), every row prefilled whole (--decoder whole-prefill) then with
#    the shared prefixes, this tree; then the same two at the length mix's answer lengths
#    (--decoder mix-whole-prefill, --decoder mix), and BASE's at those lengths;
# 2. the seed matrix at limit 10 with the length mix (--decoder mix), this tree then BASE;
# 3. a slot's start by stage (bench/start_stages.py), without and with the patches, START_ROUNDS
#    (1) times each, alternating;
# 4. the seed matrix at limit 10 forced to 10 new tokens, this tree;
# 5. the agreement (vlmfleet_tools.agreement, as bench/device_agreement.sh): this engine against
#    VLMEvalKit's batch-1 loop, known-answer strong checkpoint, float16, AGREEMENT_QUESTIONS (12)
#    a benchmark, the queue again with cache slots for 1 new token a row (--reserve 1).
# A run starts only with the seconds it needs (NEED_* below) left of CALL_SECONDS (default 570);
# ONLY (a space list of mmbench100-whole-prefill, mmbench100, mmbench100-mix-whole-prefill,
# mmbench100-mix, base-mmbench100-mix, seed-mix, base-seed-mix, start, seed-forced10, agreement)
# runs only those, e.g. to split the steps over two calls.
# $OUT receives issue28.tgz. Trees as bench/device_reserve.sh says (`git archive` of bench,
# docker/transformers-4.37/{src,tools,patches,known_answer,requirements.lock}, roles/gpu_facts, plugins,
# playbooks/vars, pyproject.toml), `.whl/` (bench/device_wheels.py) beside this one's bench/.
set -u
: "${BASE:?BASE must name the tree of the engine to compare with}"
BASE=$(cd "$BASE" && pwd)
ARCHIVE=issue28.tgz
. bench/device_call.sh
# device_call.sh patched $SITE's VLMEvalKit as the image does; the start's "plain" arm (and BASE
# with BASE_SITE) gets the wheels as released.
PLAIN_SITE=/tmp/site-plain
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$PLAIN_SITE" .whl/*.whl || exit 1
# base_matrix NAME SECONDS [ARGUMENTS]: matrix() on BASE, with BASE_SITE (default $SITE) first
# on its path and BASE_ENV's NAME=value settings (e.g. VLMFLEET_BENCH_KEEP_ENDED_ROWS=1) for
# BASE's runs only.
base_matrix() {
  (
    [ -z "${BASE_ENV:-}" ] || export ${BASE_ENV?}
    matrix "$BASE" "${BASE_SITE:-$SITE}" "$@"
  )
}
checkpoints
MMBENCH=(--benchmarks MMBench_DEV_EN --limit 100)
matrix "$PWD" "$SITE" mmbench100-whole-prefill "${NEED_MMBENCH:-80}" "${MMBENCH[@]}" \
  --decoder whole-prefill
matrix "$PWD" "$SITE" mmbench100 "${NEED_MMBENCH:-80}" "${MMBENCH[@]}"
matrix "$PWD" "$SITE" mmbench100-mix-whole-prefill "${NEED_MMBENCH:-80}" "${MMBENCH[@]}" \
  --decoder mix-whole-prefill
matrix "$PWD" "$SITE" mmbench100-mix "${NEED_MMBENCH:-80}" "${MMBENCH[@]}" --decoder mix
base_matrix base-mmbench100-mix "${NEED_MMBENCH:-80}" "${MMBENCH[@]}" --decoder mix
matrix "$PWD" "$SITE" seed-mix "${NEED_MIX:-100}" --decoder mix
base_matrix base-seed-mix "${NEED_BASE_MIX:-150}" --decoder mix
if wanted start && [ "$(left)" -lt "${NEED_START:-45}" ]; then
  echo "start: not run, $(left) s left"
elif wanted start; then
  stamp start stages
  for round in $(seq "${START_ROUNDS:-1}"); do
    for arm in plain patched; do
      site=$PLAIN_SITE
      [ "$arm" = patched ] && site=$SITE
      PYTHONPATH=$site:$PWD/docker/transformers-4.37/src:$PWD/bench \
        python3 bench/standin_launch.py bench/start_stages.py --device cuda \
        --checkpoint "$W/ckpt/models/llava-v1.5-7b-tiny" \
        > "$R/start-$arm-$round.json" 2> "$R/start-$arm-$round.log"
      echo "start $arm $round: $(tr -d '\n ' < "$R/start-$arm-$round.json" \
        | grep -o '"total_seconds":[0-9.]*\|"vlmeval_lazy":[a-z]*')"
    done
  done
  save
fi
matrix "$PWD" "$SITE" seed-forced10 "${NEED_FORCED:-60}"
if wanted agreement && [ "$(left)" -lt "${NEED_AGREEMENT:-150}" ]; then
  echo "agreement: not run, $(left) s left"
elif wanted agreement; then
  stamp agreement
  timeout "$(( $(left) - 5 ))" python3 bench/standin_launch.py -m vlmfleet_tools.agreement \
    --checkpoint docker/transformers-4.37/known_answer/llava-known-strong --device cuda \
    --questions "${AGREEMENT_QUESTIONS:-12}" --work /tmp/vlmfleet-agreement --reserve 1 \
    --out "$R/agreement-cuda.json" > "$R/agreement.log" 2>&1
  echo "agreement: exit $?"
  grep -v -i -E "warn|^ *$" "$R/agreement.log" | tail -8
  save
fi
stamp done
save
