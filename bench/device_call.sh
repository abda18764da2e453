# Sourced by the device scripts (bench/device_*.sh) after setting ARCHIVE: what every device
# call sets up first. The wheels of the image's versions (.whl/, bench/device_wheels.py) go into
# $SITE; results go to $R, and save() packs them into $OUT/$ARCHIVE (at most 8 files come back
# from $OUT: one archive, renewed after each stage, so a call stopped at its limit still returns
# what was done); stamp() prints the seconds since the start.
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
