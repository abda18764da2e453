#!/usr/bin/env bash
# The H100 run, in device calls of at most 10 minutes each (the whole bench takes about 35):
#   bash bench/device_h100.sh start   # install carried wheels, build checkpoints, start the bench
#   bash bench/device_h100.sh wait    # each next call, on the same warm machine: wait, collect
#   bash bench/device_h100.sh next    # another BENCH_ARMS/BENCH_ARGS/BENCH_NAME on that machine
# The bench runs detached (setsid) so it outlives each call; the machine stays warm only 30 s
# after a call, so the next call must follow at once. Results (the JSON is rewritten after every
# arm and every loop process) land in $OUT at the end of each call.
set -u
W=/tmp/vlmfleet-bench
SITE=/tmp/site
# Import-only modules of ms-vlmeval that the machine lacks and that are too big to carry
# (bench/standin_launch.py): video, Chinese segmentation, HF datasets, OpenAI client.
STANDINS=datasets,decord,jieba,av,qwen_vl_utils,openai
DEADLINE=$((SECONDS + ${BENCH_CALL_SECONDS:-560}))
export PYTHONPATH=$SITE:$PWD/docker/transformers-4.37/src
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$W"

collect() {
  cp -f "$W"/*.json "$W"/*.log "$OUT"/ 2>/dev/null
  tail -c 20000 "$W/bench.log" 2>/dev/null | tail -25
}

if [ "${1:-}" = start ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
  # VLMEvalKit patched as the image patches it (the worker's dataset lookups need the lazy module).
  VLMFLEET_BENCH_STANDINS=$STANDINS python3 bench/standin_launch.py docker/transformers-4.37/patches/patch_vlmeval_lazy.py "$SITE" || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  VLMFLEET_BENCH_STANDINS=$STANDINS python3 bench/standin_launch.py bench/probe_imports.py \
    2>&1 | tee "$W/probe.log" | tail -15 || exit 1
  grep -q "^imports ok" "$W/probe.log" || exit 1
  python3 bench/fullsize_checkpoint.py --root "$W/ckpt" llava_v1.5_7b llava_v1.5_13b \
    2>&1 | tee "$W/checkpoints.log" | grep -v Warning | tail -5
  df -h /tmp | tail -1
fi
if [ "${1:-}" = start ] || [ "${1:-}" = next ]; then
  # next: another bench on the same warm machine (wheels and checkpoints already in place).
  rm -f "$W/bench.done"
  setsid nohup bash -c "python3 bench/matrix_bench.py --device cuda --arms ${BENCH_ARMS:-project,attn,loop,scale} \
    --work $W --checkpoints $W/ckpt --standins $STANDINS ${BENCH_ARGS:-} \
    --label '${BENCH_LABEL:-H100: full-size random LLaVA-1.5-7B/13B}' --out $W/${BENCH_NAME:-h100-fullsize}.json; touch $W/bench.done" \
    > "$W/bench.log" 2>&1 < /dev/null &
fi
while [ ! -e "$W/bench.done" ] && [ $SECONDS -lt $DEADLINE ]; do sleep 5; done
collect
[ -e "$W/bench.done" ] && echo "bench finished" || echo "bench still running"
