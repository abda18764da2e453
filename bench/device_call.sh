# Sourced by the device scripts (bench/device_*.sh) after setting ARCHIVE: what every device
# call sets up first. The wheels of the image's versions (.whl/, bench/device_wheels.py) go into
# $SITE; results go to $R, and save() packs them into $OUT/$ARCHIVE (at most 8 files come back
# from $OUT: one archive, renewed after each stage, so a call stopped at its limit still returns
# what was done); stamp() prints the seconds since the start; left() the seconds left of the
# call's CALL_SECONDS (default 570); matrix() runs bench/matrix_bench.py's project arm, when
# wanted() (ONLY: the steps to run, by name).
: "${OUT:?OUT must name the folder for the results}"
: "${ARCHIVE:?ARCHIVE must name the archive the results go into}"
SITE=/tmp/site
W=/tmp/vlmfleet-bench
STANDINS=datasets,decord,jieba,av,qwen_vl_utils,openai
export PYTHONPATH=$SITE:$PWD/docker/transformers-4.37/src:$PWD/docker/transformers-4.37/tools:$PWD/bench
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false VLMFLEET_BENCH_STANDINS=$STANDINS
R=$W/out
mkdir -p "$R"
save() { tar czf "$OUT/$ARCHIVE" -C "$R" .; }
T0=$SECONDS
stamp() { echo "== $(( SECONDS - T0 )) s: $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl || exit 1
# VLMEvalKit patched as the image patches it (the worker's dataset lookups need the lazy module).
python3 bench/standin_launch.py docker/transformers-4.37/patches/patch_vlmeval_lazy.py "$SITE" || exit 1
left() { echo $(( ${CALL_SECONDS:-570} - (SECONDS - T0) )); }
# wanted NAME: whether the step NAME runs: every step, or only those ONLY names (a space list).
wanted() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
# checkpoints [MODEL ...]: the full-size random checkpoints (bench/fullsize_checkpoint.py; by
# default both seed models) under $W/ckpt, and the GPU's name in $R/gpu.txt.
checkpoints() {
  local models=("$@")
  [ ${#models[@]} -gt 0 ] || models=(llava_v1.5_7b llava_v1.5_13b)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
  stamp checkpoints
  python3 bench/fullsize_checkpoint.py --root "$W/ckpt" "${models[@]}" \
    >> "$R/checkpoints.log" 2>&1 || { tail -20 "$R/checkpoints.log"; exit 1; }
}
# matrix TREE SITE NAME SECONDS [ARGUMENTS]: TREE's bench/matrix_bench.py, project arm, layout
# 1x2 (the 13B and the 7B in two slots of the GPU), with SITE first on its path, on the
# checkpoints of bench/fullsize_checkpoint.py under $W/ckpt; run only with SECONDS left of the
# call; its JSON ($R/NAME.json), log and the workers' logs ($R/NAME-logs/) saved.
matrix() {
  local tree=$1 site=$2 name=$3 needs=$4
  shift 4
  wanted "$name" || return 0
  if [ "$(left)" -lt "$needs" ]; then
    echo "$name: not run, $(left) s left"
    return
  fi
  stamp "$name"
  (cd "$tree" && PYTHONPATH=$site:$tree/docker/transformers-4.37/src:$tree/docker/transformers-4.37/tools:$tree/bench \
    timeout "$(( $(left) - 5 ))" python3 bench/matrix_bench.py --device cuda --arms project \
    --layouts 1x2 --work "$W" --checkpoints "$W/ckpt" --standins "$STANDINS" \
    --label "$name" --out "$R/$name.json" ${MATRIX_ARGS:-} "$@" > "$R/$name.log" 2>&1)
  echo "$name: exit $?"
  grep -o '"wall_s": [0-9.]*, "exit_codes": [^]]*], "combinations_ok": [0-9]*' "$R/$name.log"
  mkdir -p "$R/$name-logs"
  for log in "$W"/outputs/*/bench/*/worker.log; do
    [ -e "$log" ] && cp "$log" "$R/$name-logs/$(basename "$(dirname "$log")").log"
  done
  save
}
