#!/usr/bin/env bash
# Issue 28's batch reserve on one device machine (one call of at most 7 minutes):
#   BASE=../base bash bench/device_reserve.sh
# The seed matrix at limit 10 (bench/matrix_bench.py, project arm, layout 1x2, as in
# device_seed_matrix.sh), in this order, each JSON and the workers' logs saved as it ends:
# 1. this tree's engine (batches sized for the reserve) with the length mix (--decoder mix);
# 2. BASE's engine (another tree of the same layout, e.g. main's, batches sized for
#    max_new_tokens), same bench code and the same mix (each sample's length is its own);
# 3. this tree's engine with every answer forced to 10 tokens.
# A run starts only with the seconds it needs (its wall on the H100 of bench/README.md's seed
# matrix call, plus its start and evaluation; NEED_RESERVE, NEED_BASE, NEED_FORCED) left of the
# call's CALL_SECONDS (default 400). MATRIX_ARGS: more matrix_bench arguments for every run
# (e.g. --benchmarks ..., a part of the matrix where the call is short). $OUT receives reserve.tgz. Trees: `git archive HEAD bench docker/transformers-4.37/src
# docker/transformers-4.37/tools docker/transformers-4.37/requirements.lock roles/gpu_facts
# plugins playbooks/vars pyproject.toml` of each, `.whl/` (bench/device_wheels.py) beside this
# one's bench/.
set -u
: "${BASE:?BASE must name the tree of the engine to compare with}"
BASE=$(cd "$BASE" && pwd)
ARCHIVE=reserve.tgz
. bench/device_call.sh
left() { echo $(( ${CALL_SECONDS:-400} - (SECONDS - T0) )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
stamp checkpoints
python3 bench/fullsize_checkpoint.py --root "$W/ckpt" llava_v1.5_7b llava_v1.5_13b \
  > "$R/checkpoints.log" 2>&1 || { tail -20 "$R/checkpoints.log"; exit 1; }
matrix() {  # tree, name, seconds it needs, extra arguments
  local tree=$1 name=$2 needs=$3
  shift 3
  if [ "$(left)" -lt "$needs" ]; then
    echo "$name: not run, $(left) s left"
    return
  fi
  stamp "$name"
  (cd "$tree" && PYTHONPATH=$SITE:$tree/docker/transformers-4.37/src:$tree/docker/transformers-4.37/tools:$tree/bench \
    timeout "$(( $(left) - 5 ))" python3 bench/matrix_bench.py --device cuda --arms project \
    --layouts 1x2 --work "$W" --checkpoints "$W/ckpt" --standins "$STANDINS" \
    --label "seed matrix, limit 10 ($name)" --out "$R/$name.json" ${MATRIX_ARGS:-} "$@" \
    > "$R/$name.log" 2>&1)
  echo "$name: exit $?"
  grep -o '"wall_s": [0-9.]*, "exit_codes": [^]]*], "combinations_ok": [0-9]*' "$R/$name.log"
  mkdir -p "$R/$name-logs"
  for log in "$W"/outputs/*/bench/*/worker.log; do
    [ -e "$log" ] && cp "$log" "$R/$name-logs/$(basename "$(dirname "$log")").log"
  done
  grep -h "batch of" "$R/$name-logs/"*.log | grep -c deferred
  grep -h "deferred" "$R/$name-logs/"*.log | grep -v " 0 deferred" | tail -5
  save
}
matrix "$PWD" reserve-mix "${NEED_RESERVE:-90}" --decoder mix
matrix "$BASE" base-mix "${NEED_BASE:-120}" --decoder mix
matrix "$PWD" reserve-forced10 "${NEED_FORCED:-65}"
stamp done
save
