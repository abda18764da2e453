#!/usr/bin/env bash
# Issue 28's second device call, all on one machine (one call of at most 10 minutes):
#   bash bench/device_seed_matrix.sh
# 1. the seed matrix at limit 10 with today's engine (bench/matrix_bench.py, project arm, layout
#    1x2 as the earlier figures): every answer forced to 10 tokens, then the same with the
#    length mix (--decoder mix, bench/mix_worker.py); stages per run (loads, combinations);
# 2. the slot start by stage (bench/start_stages.py) and what VLMEvalKit's import would cost if
#    only the modules a slot uses were imported (bench/lazy_import_probe.py);
# 3. the 13B length mix at --batch 32 (bench/length_mix.py), until the call's time is spent.
# $OUT receives seed-matrix.tgz: every JSON and log. Overrides: MIX_ROWS_13B, CALL_SECONDS,
# MATRIX_ONLY=1 (stop after step 1).
# The tree it needs, where the device tool sends another checkout (as in this session): from
# this branch, `git archive HEAD bench docker/transformers-4.37/src docker/transformers-4.37/tools
# docker/transformers-4.37/requirements.lock roles/gpu_facts plugins playbooks/vars pyproject.toml`
# unpacked into an ignored folder of that checkout with `.whl/` beside it, the folder carried, and
# the command `cd FOLDER && bash bench/device_seed_matrix.sh`.
set -u
ARCHIVE=seed-matrix.tgz
. bench/device_call.sh
checkpoints
matrix() {  # name, extra arguments
  local name=$1
  shift
  python3 bench/matrix_bench.py --device cuda --arms project --layouts 1x2 --work "$W" \
    --checkpoints "$W/ckpt" --standins "$STANDINS" --label "H100: seed matrix, limit 10 ($name)" \
    --out "$R/$name.json" "$@" > "$R/$name.log" 2>&1
  echo "$name: exit $?"
  grep -o '"wall_s": [0-9.]*, "exit_codes": [^]]*], "combinations_ok": [0-9]*' "$R/$name.log"
  grep -o '"model_load_s": [0-9.]*, "combination_s": [0-9.]*' "$R/$name.log"
}
stamp seed matrix, forced 10 tokens
matrix h100-seed-limit10
save
stamp seed matrix, length mix
matrix h100-seed-limit10-mix --decoder mix
save
[ "${MATRIX_ONLY:-0}" = 1 ] && { stamp done; exit 0; }
stamp start stages
python3 bench/standin_launch.py bench/start_stages.py --checkpoint "$W/ckpt/models/llava-v1.5-7b-tiny" \
  > "$R/start-stages.json" 2> "$R/start-stages.log"
cat "$R/start-stages.json"
for mode in "" --without-config; do
  python3 bench/standin_launch.py bench/lazy_import_probe.py $mode > "$R/lazy-import$mode.json" \
    2> "$R/lazy-import$mode.log"
  grep -E "used_seconds|loaded" "$R/lazy-import$mode.json"
done
save
stamp mix 13b
LEFT=$(( ${CALL_SECONDS:-560} - (SECONDS - T0) ))
timeout "$(( LEFT > 10 ? LEFT : 10 ))" python3 bench/standin_launch.py bench/length_mix.py \
  --checkpoint "$W/ckpt/models/llava-v1.5-13b-tiny" --rows "${MIX_ROWS_13B:-300}" --batch 32 \
  --out "$R/mix-13b.json" > "$R/mix-13b.log" 2>&1
echo "mix 13b: exit $?"
grep -v Warn "$R/mix-13b.log" | tail -32
save
stamp done
