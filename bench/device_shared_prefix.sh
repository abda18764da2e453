#!/usr/bin/env bash
# Issue 28 item 3's A/B, all on one machine (one call of at most 10 minutes):
#   bash bench/device_shared_prefix.sh
# MMBench_DEV_EN at limit 100 (100 questions, each with its 3 rotations: 400 rows), the 7B and the
# 13B on layout 1x2 as the earlier limit-100 figures (bench/matrix_bench.py, project arm, answers
# forced to 10 tokens), with every row prefilled whole (--decoder whole-prefill,
# bench/whole_prefill_worker.py: the engine as before the shared prefixes), then with the shared
# prefixes (the product), then both again in the other order. Each record's
# samples_prefix_shared says how many rows were answered from a shared prefill.
# $OUT receives shared-prefix.tgz: every JSON and log. Overrides: MATRIX_ARGS (more
# matrix_bench.py options), ONCE=1 (one run of each arm).
# The tree it needs: as bench/device_seed_matrix.sh says (this branch's files with .whl/ beside).
set -u
ARCHIVE=shared-prefix.tgz
. bench/device_call.sh
checkpoints
MMBENCH=(--benchmarks MMBench_DEV_EN --limit 100)
arm() {  # name, extra arguments
  matrix "$PWD" "$SITE" "$1" 0 "${MMBENCH[@]}" "${@:2}"
  grep -o '"samples_prefix_shared": [0-9]*' "$R/$1.log" | sort | uniq -c
}
arm whole-prefill --decoder whole-prefill
arm shared-prefix
[ "${ONCE:-0}" = 1 ] && { stamp done; exit 0; }
arm shared-prefix-2
arm whole-prefill-2 --decoder whole-prefill
stamp done
