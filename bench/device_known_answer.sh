#!/usr/bin/env bash
# Train the known-answer checkpoints on the GPU machine, in one device call:
#   bash bench/device_known_answer.sh
# `python -m vlmfleet_tools.known_answer_training --device cuda` trains both skills (float32,
# deterministic kernels), writes them to docker/transformers-4.37/known_answer/ of the machine's
# working tree and $OUT/known_answer.tar (unpack it into docker/transformers-4.37/ here), then
# bench/device_agreement.sh compares batched and batch-1 predictions on the new strong one.
# Overrides: KA_ARGS (more vlmfleet_tools.known_answer_training options, e.g. --steps 6000
# --lr 5e-4).
set -u
: "${OUT:?OUT must name the folder for the results}"
SITE=/tmp/site
ROOT=docker/transformers-4.37/known_answer
# The tools package (not in the image) beside the worker's package, both from the working tree.
export PYTHONPATH=$SITE:$PWD/docker/transformers-4.37/src:$PWD/docker/transformers-4.37/tools
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export VLMFLEET_BENCH_STANDINS=datasets,decord,jieba,av,qwen_vl_utils,openai
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl || exit 2
# VLMEvalKit patched as the image patches it (the worker's dataset lookups need the lazy module).
python3 bench/standin_launch.py docker/transformers-4.37/patches/patch_vlmeval_lazy.py "$SITE" || exit 2
rm -rf "$ROOT"
timeout ${KA_SECONDS:-330} python3 bench/standin_launch.py -m vlmfleet_tools.known_answer_training "$ROOT" --device cuda \
  ${KA_ARGS:-} > "$OUT/known_answer.log" 2>&1
rc=$?
grep -v -i -E "warn|^ *$|kwargs received|DeviceLLaVA\(" "$OUT/known_answer.log" | tail -12
[ $rc -eq 0 ] || exit $rc
tar -C docker/transformers-4.37 -cf "$OUT/known_answer.tar" known_answer
AGREEMENT_SECONDS=${AGREEMENT_SECONDS:-200} bash bench/device_agreement.sh
