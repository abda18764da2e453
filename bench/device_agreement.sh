#!/usr/bin/env bash
# Batched generation against VLMEvalKit's batch-1 loop on the GPU machine, in one device call:
#   bash bench/device_agreement.sh
# The machine has no Docker and no network: the worker's packages come from the carried wheels
# in .whl/ (bench/README.md lists them), the import-only modules too big to carry get inert
# stand-ins (bench/standin_launch.py), and `python -m vlmfleet_tools.agreement --device cuda`
# (float16, the product's GPU dtype) runs on the known-answer strong checkpoint of the working
# tree. $OUT receives agreement-cuda.json, agreement.log and probe.log.
# Overrides: AGREEMENT_CHECKPOINT (a folder in the working tree), AGREEMENT_QUESTIONS (24, the
# smoke data's default), AGREEMENT_ARGS (more vlmfleet_tools.agreement options).
# Exit status: vlmfleet_tools.agreement's (0 every row identical, 1 some row differs), else 2 or 124.
set -u
: "${OUT:?OUT must name the folder for the results}"
SITE=/tmp/site
WORK=/tmp/vlmfleet-agreement
# As bench/device_h100.sh: ms-vlmeval imports these at import time; the LLaVA path never calls them.
STANDINS=datasets,decord,jieba,av,qwen_vl_utils,openai
CHECKPOINT=${AGREEMENT_CHECKPOINT:-docker/transformers-4.37/known_answer/llava-known-strong}
QUESTIONS=${AGREEMENT_QUESTIONS:-24}
# The tools package (not in the image) beside the worker's package, both from the working tree.
export PYTHONPATH=$SITE:$PWD/docker/transformers-4.37/src:$PWD/docker/transformers-4.37/tools
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false VLMFLEET_BENCH_STANDINS=$STANDINS

if [ ! -f "$CHECKPOINT/config.json" ]; then
  echo "no checkpoint at $CHECKPOINT: carry it in the working tree or set AGREEMENT_CHECKPOINT"
  exit 2
fi
if ! ls .whl/*.whl > /dev/null 2>&1; then
  echo "no wheels in .whl/: bench/README.md says which to carry"
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl || exit 2
# VLMEvalKit patched as the image patches it (the worker's dataset lookups need the lazy module).
python3 bench/standin_launch.py docker/transformers-4.37/patches/patch_vlmeval_lazy.py "$SITE" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The checkpoint's slow Llama tokenizer needs sentencepiece and protobuf (legacy=False): the
# machine's own, as for bench/fullsize_checkpoint.py.
python3 -c "import sentencepiece, google.protobuf" || {
  echo "sentencepiece or protobuf missing on this machine: carry their cp312 wheels in .whl/"
  exit 2
}
python3 bench/standin_launch.py bench/probe_imports.py 2>&1 | tee "$OUT/probe.log" | tail -15
grep -q "^imports ok" "$OUT/probe.log" || exit 2

rm -rf "$WORK"
# Inside the 10-minute call with room to copy the results back.
timeout "${AGREEMENT_SECONDS:-540}" python3 bench/standin_launch.py -m vlmfleet_tools.agreement \
  --checkpoint "$CHECKPOINT" --device cuda --questions "$QUESTIONS" --work "$WORK" \
  --out "$OUT/agreement-cuda.json" ${AGREEMENT_ARGS:-} > "$OUT/agreement.log" 2>&1
rc=$?
grep -v -i -E "warn|^ *$" "$OUT/agreement.log" | tail -25
[ $rc -eq 124 ] && echo "vlmfleet_tools.agreement ran past ${AGREEMENT_SECONDS:-540} s (no report)"
exit $rc
