#!/usr/bin/env bash
# The two trees bench/device_issue28.sh compares, under bench/work/ (ignored by git):
#   bash bench/device_trees.sh [BASE_REV]
# - bench/work/cur: HEAD's files the device needs, symbolic links resolved, and .whl/ (the wheels
#   of the image's versions, bench/device_wheels.py; kept from an earlier tree when there is one);
# - bench/work/base: the same files of BASE_REV (default 1da4e15: batches sized for
#   max_new_tokens, with BASE_ENV=VLMFLEET_BENCH_KEEP_ENDED_ROWS=1 the decoder as issue 28 found
#   it), with HEAD's bench/mix_worker.py, so that both engines draw each sample's answer length
#   alike. Its results and known-answer checkpoints are left out: what a device call carries,
#   with the tracked tree, must stay under 64 MiB.
# Then: cd bench/work/cur && BASE=../base BASE_SITE=/tmp/site-plain \
#   BASE_ENV=VLMFLEET_BENCH_KEEP_ENDED_ROWS=1 ONLY="seed-mix base-seed-mix" bash bench/device_issue28.sh
# (carry bench/work; BASE_SITE only for a BASE from before the lazy VLMEvalKit patch).
set -eu
cd "$(git rev-parse --show-toplevel)"
BASE_REV=${1:-1da4e15}
WORK=bench/work
PATHS=(bench docker/transformers-4.37/src docker/transformers-4.37/tools
  docker/transformers-4.37/patches docker/transformers-4.37/known_answer
  docker/transformers-4.37/requirements.lock roles/gpu_facts plugins playbooks/vars pyproject.toml)

# unpack REV DEST [PATH...]: REV's PATHs that exist at REV, links resolved, into DEST.
unpack() {
  local rev=$1 dest=$2 staging present=()
  shift 2
  for path in "$@"; do
    git cat-file -e "$rev:$path" 2>/dev/null && present+=("$path")
  done
  staging=$(mktemp -d)
  git archive "$rev" "${present[@]}" | tar x -C "$staging"
  rm -rf "$dest"
  mkdir -p "$dest"
  cp -rL "$staging/." "$dest/"
  rm -rf "$staging"
}

# The wheels are kept aside while cur is unpacked again: they change only with the image's versions.
wheels=$(mktemp -d)
[ -d "$WORK/cur/.whl" ] && mv "$WORK/cur/.whl" "$wheels/"
unpack HEAD "$WORK/cur" "${PATHS[@]}"
[ -d "$wheels/.whl" ] || python3 bench/device_wheels.py --dest "$wheels/.whl"
mv "$wheels/.whl" "$WORK/cur/"
rm -rf "$wheels"
unpack "$BASE_REV" "$WORK/base" "${PATHS[@]}"
rm -rf "$WORK/base/bench/results" "$WORK/base/docker/transformers-4.37/known_answer" \
  "$WORK/cur/bench/results"
cp bench/mix_worker.py "$WORK/base/bench/mix_worker.py"
tracked=$(git ls-tree -r -l HEAD | awk '{ bytes += $4 } END { print bytes }')
carried=$(( $(du -sb "$WORK" | cut -f1) + tracked ))
echo "device_trees: $WORK/cur (HEAD $(git rev-parse --short HEAD)), $WORK/base ($BASE_REV);" \
  "$(( carried / 1048576 )) MiB with the tracked tree (the device takes 64)"
