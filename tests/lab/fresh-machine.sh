#!/usr/bin/env bash
# CI's `.ci/run` on a machine with nothing installed by hand, as far as a container can be one:
# a clean clone of HEAD in a new container of the lab's debootstrapped Debian 12 (minbase,
# python3, systemd: tests/lab/lab.sh's LAB_PACKAGES, nothing else), given what Docker and the
# molecule instances need to run inside it (the options of molecule/default/molecule.yml).
# Whatever a test uses must then come from the suite's own installs (the Makefile, lab.sh).
#
#   bash tests/lab/fresh-machine.sh            # log: .lab/fresh-machine.log; prints the wall time
#   FRESH_COMMAND='make lint unit lab' bash tests/lab/fresh-machine.sh   # a part of it
#
# Needs this machine's Docker and the lab's base image (`make lab`), and about 40 GB free: the
# container builds the evaluation image, saves its tarball and loads it into two instances.
set -euo pipefail
cd "$(dirname "$0")/../.."
DOCKER=/usr/bin/docker
image=${LAB_BASE_IMAGE:-vlm-lab/debian12:latest}
name=vlm-fresh-machine
log=${LAB_DIR:-.lab}/fresh-machine.log
clone=$(mktemp -d /var/tmp/vlm-fresh.XXXXXX)

cleanup() {
    "$DOCKER" rm -f -v "$name" >/dev/null 2>&1 || true
    rm -rf "$clone"
}
trap cleanup EXIT
cleanup_container_only() { "$DOCKER" rm -f -v "$name" >/dev/null 2>&1 || true; }
cleanup_container_only

git clone --quiet "$PWD" "$clone/work/main"
echo "fresh-machine: clone of $(git rev-parse --short HEAD) in $name ($image)"
"$DOCKER" run -d --name "$name" --hostname fresh-machine \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock \
    -v /var/lib/docker \
    -v "$clone:/check" \
    "$image" >/dev/null
for _ in $(seq 1 60); do
    state=$("$DOCKER" exec "$name" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
done
# The network's own CAs (a TLS-inspecting egress proxy here) come with every machine of it, CI's
# included: the container trusts what this machine trusts, and nothing else is carried over.
for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -e $crt ]] && "$DOCKER" cp "$crt" "$name:/usr/local/share/ca-certificates/"
done
"$DOCKER" exec "$name" update-ca-certificates >/dev/null
start=$SECONDS
set +e
"$DOCKER" exec "$name" bash -c "cd /check/work/main && ${FRESH_COMMAND:-.ci/run}" >"$log" 2>&1
status=$?
set -e
echo "fresh-machine: ${FRESH_COMMAND:-.ci/run} exited $status after $((SECONDS - start)) s (log: $log)"
tail -n 5 "$log"
exit "$status"
