#!/usr/bin/env bash
# `molecule test`, with the failing tasks' messages repeated at the end: a CI log keeps only
# its tail, and molecule's own tail is the destroy step and a return code.
set -uo pipefail
cd "$(dirname "$0")/../.."
log=${LAB_DIR:-.lab}/molecule.log
mkdir -p "$(dirname "$log")"
molecule test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo "molecule test failed (rc $status); the failing tasks (whole log: $log):"
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -a -B2 -A14 -E 'fatal: |FAILED! =>|UNREACHABLE!' | tail -80
fi
exit "$status"
