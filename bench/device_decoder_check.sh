#!/usr/bin/env bash
# The product's static decoder against generate on the GPU, after `bench/device_h100.sh start`
# on the same warm machine (wheels installed, full-size checkpoints built):
#   bash bench/device_decoder_check.sh
# - bench/static_decode.py --check in float16 on the known-answer checkpoints (strong, weak) and
#   on the bench's full-size random 7B (150 tokens: the cache's window grows twice), eager and
#   with CUDA graphs;
# - the allocator cap of a slot sharing the GPU (vlmfleet.stack.cap_gpu_share) is enforced: an
#   allocation past the share fails with out-of-memory, with expandable segments on as the worker
#   sets them.
# $OUT receives decoder-check-*.log and gpu-share.log. Exit 1 when a known-answer row differs or
# the cap is not enforced (random full-size rows may differ on float16 near-ties: reported only).
set -u
: "${OUT:?OUT must name the folder for the results}"
export PYTHONPATH=/tmp/site:$PWD/docker/transformers-4.37/src
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export VLMFLEET_BENCH_STANDINS=datasets,decord,jieba,av,qwen_vl_utils,openai
rc=0
check() {
  local name=$1 checkpoint=$2
  shift 2
  python3 bench/standin_launch.py bench/static_decode.py --check --device cuda \
    --checkpoint "$checkpoint" "$@" > "$OUT/decoder-check-$name.log" 2>&1
  local status=$?
  echo "== $name: exit $status"
  grep -E '^\{|^OK|^FAIL' "$OUT/decoder-check-$name.log" | tail -12
  return $status
}
for skill in strong weak; do
  python3 -c "from pathlib import Path; from vlmfleet.tiny_checkpoint import ensure_copy; \
ensure_copy(Path('docker/transformers-4.37/known_answer/llava-known-$skill'), \
Path('/tmp/known/llava-known-$skill'))" || rc=1
  check "$skill" "/tmp/known/llava-known-$skill" || rc=1
done
check random-7b /tmp/vlmfleet-bench/ckpt/models/llava-v1.5-7b-tiny --new-tokens 10 150
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 - > "$OUT/gpu-share.log" 2>&1 <<'PY'
import torch
from vlmfleet.stack import cap_gpu_share

fractions = cap_gpu_share(2)
total = torch.cuda.get_device_properties(0).total_memory
share = fractions[0] * total
print(f"fraction {fractions[0]:.4f} of {total / 2**30:.1f} GiB: {share / 2**30:.1f} GiB")
held = [torch.empty(2**30, dtype=torch.uint8, device="cuda") for _ in range(int(share // 2**30) - 1)]
print(f"holding {len(held)} GiB within the share")
try:
    more = [torch.empty(2**30, dtype=torch.uint8, device="cuda") for _ in range(3)]
except torch.cuda.OutOfMemoryError as err:
    print("capped: " + str(err).splitlines()[0][:300])
else:
    print(f"NOT CAPPED: {len(held) + len(more)} GiB held")
    raise SystemExit(1)
PY
share_rc=$?
cat "$OUT/gpu-share.log"
[ $share_rc -eq 0 ] || rc=1
exit $rc
