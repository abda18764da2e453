#!/usr/bin/env bash
# Issue 28's device call, all on one machine (one call of at most 10 minutes):
#   bash bench/device_length_mix.sh
# 1. the slot start by stage (bench/start_stages.py, a fresh process, the 7B), and VLMEvalKit's
#    import by module (python -X importtime);
# 2. the length mix on the full-size random 7B, then 13B: today's decoder against ended rows
#    leaving the batch, same rows, same batches (bench/length_mix.py);
# 3. the static decoder against generate on the known-answer checkpoints in float16, eager and
#    with graphs (bench/static_decode.py --check), and the engine against VLMEvalKit's batch-1
#    loop (vlmfleet_tools.agreement, as bench/device_agreement.sh): rows now leave the batch.
# $OUT receives length-mix.tgz: every JSON and log.
# Overrides: MIX_ROWS_7B, MIX_ROWS_13B, CALL_SECONDS (the 13B mix stops
# there).
set -u
ARCHIVE=length-mix.tgz
. bench/device_call.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
stamp checkpoints
python3 bench/fullsize_checkpoint.py --root "$W/ckpt" llava_v1.5_7b \
  > "$R/checkpoints.log" 2>&1 || { tail -20 "$R/checkpoints.log"; exit 1; }
M7=$W/ckpt/models/llava-v1.5-7b-tiny
M13=$W/ckpt/models/llava-v1.5-13b-tiny
save
stamp mix 7b
python3 bench/standin_launch.py bench/length_mix.py --checkpoint "$M7" --rows "${MIX_ROWS_7B:-600}" \
  --out "$R/mix-7b.json" > "$R/mix-7b.log" 2>&1
grep -v Warn "$R/mix-7b.log" | tail -32
save
stamp known-answer checks
for skill in strong weak; do
  python3 -c "from pathlib import Path; from vlmfleet.tiny_checkpoint import ensure_copy; \
ensure_copy(Path('docker/transformers-4.37/known_answer/llava-known-$skill'), \
Path('/tmp/known/llava-known-$skill'))"
  python3 bench/standin_launch.py bench/static_decode.py --check --device cuda --no-cudnn-sdpa \
    --checkpoint "/tmp/known/llava-known-$skill" --new-tokens 1 10 150 \
    > "$R/decoder-check-$skill.log" 2>&1
  echo "$skill: exit $?"; grep -E '^OK|^FAIL' "$R/decoder-check-$skill.log"
done
save
stamp agreement
# The engine's batches against VLMEvalKit's batch-1 loop (bench/device_agreement.sh's run, its
# wheels already installed), on the known-answer strong checkpoint in float16.
timeout "${AGREEMENT_SECONDS:-150}" python3 bench/standin_launch.py -m vlmfleet_tools.agreement \
  --checkpoint docker/transformers-4.37/known_answer/llava-known-strong --device cuda \
  --questions "${AGREEMENT_QUESTIONS:-12}" --work /tmp/vlmfleet-agreement \
  --out "$R/agreement-cuda.json" > "$R/agreement.log" 2>&1
echo "agreement: exit $?"; grep -v -i -E "warn|^ *$" "$R/agreement.log" | tail -6
save
stamp start stages
for run in 1; do
  python3 bench/standin_launch.py bench/start_stages.py --checkpoint "$M7" \
    > "$R/start-stages-$run.json" 2> "$R/start-stages-$run.log"
  cat "$R/start-stages-$run.json"
done
python3 -X importtime bench/standin_launch.py bench/probe_imports.py 2> "$R/importtime.log" \
  | tail -2
save
stamp checkpoint 13b
python3 bench/fullsize_checkpoint.py --root "$W/ckpt" llava_v1.5_13b >> "$R/checkpoints.log" 2>&1
stamp mix 13b
LEFT=$(( ${CALL_SECONDS:-540} - (SECONDS - T0) ))
timeout "$(( LEFT > 10 ? LEFT : 10 ))" python3 bench/standin_launch.py bench/length_mix.py \
  --checkpoint "$M13" --rows "${MIX_ROWS_13B:-300}" --batch 32 --out "$R/mix-13b.json" \
  > "$R/mix-13b.log" 2>&1
grep -v Warn "$R/mix-13b.log" | tail -32
save
stamp done
