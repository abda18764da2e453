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
# call's CALL_SECONDS (default 570). MATRIX_ARGS: more matrix_bench arguments for every run
# (e.g. --benchmarks ..., a part of the matrix where the call is short). $OUT receives reserve.tgz. Trees: `git archive HEAD bench docker/transformers-4.37/src
# docker/transformers-4.37/tools docker/transformers-4.37/requirements.lock roles/gpu_facts
# plugins playbooks/vars pyproject.toml` of each, `.whl/` (bench/device_wheels.py) beside this
# one's bench/.
set -u
: "${BASE:?BASE must name the tree of the engine to compare with}"
BASE=$(cd "$BASE" && pwd)
ARCHIVE=reserve.tgz
. bench/device_call.sh
checkpoints
matrix "$PWD" "$SITE" reserve-mix "${NEED_RESERVE:-90}" --decoder mix
matrix "$BASE" "$SITE" base-mix "${NEED_BASE:-120}" --decoder mix
matrix "$PWD" "$SITE" reserve-forced10 "${NEED_FORCED:-65}"
stamp done
save
