#!/usr/bin/env bash
# The offline test lab, idempotent: Docker Engine from Debian, a running dockerd, the local
# base image the molecule instances boot from, and Chromium for the report tests.
# No container registry is used: the base image is debootstrapped and `docker import`ed, and it
# is rebuilt only when its recipe (below) changes. Every step prints what it did or reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
# The distribution's client: a newer client without buildx may come first on PATH.
DOCKER=/usr/bin/docker
LAB_DIR=${LAB_DIR:-.lab}

# The base image recipe. Everything that changes the image's content is in these variables or
# in build_base_image(); their hash is the image's label, so a change means a rebuild.
LAB_BASE_IMAGE=${LAB_BASE_IMAGE:-vlm-lab/debian12:latest}
LAB_DEBIAN_MIRROR=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
LAB_DEBIAN_SUITE=bookworm
# systemd runs as PID 1 in the instances so services behave as on a real host; contrib and
# non-free are enabled as on a GPU host, so the driver role's install path resolves in check mode.
LAB_COMPONENTS=main,contrib,non-free,non-free-firmware
LAB_PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,ca-certificates,gnupg,sudo,procps,iproute2,busybox-static

# The evaluation image's base in the lab (tests/lab/build-image.sh): Debian 12's CPython 3.11
# with venv and pip, in place of python:3.11-slim-bookworm, which needs Docker Hub.
LAB_PYTHON_IMAGE=${LAB_PYTHON_IMAGE:-vlm-lab/debian12-python:latest}
LAB_PYTHON_PACKAGES=python3.11,python3-venv,python3-pip,ca-certificates

log() { printf 'lab: %s\n' "$*"; }

apt_updated=false
apt_install() {
    # Installs only the packages of "$@" that are missing.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages present: $*"
        return
    fi
    if [ "$apt_updated" = false ]; then
        apt-get update -qq
        apt_updated=true
    fi
    log "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_dockerd() {
    if "$DOCKER" info >/dev/null 2>&1; then
        log "dockerd running: reused"
        return
    fi
    # systemd or sysvinit where they work; on machines where neither can start it (no systemd,
    # and the init script's `ulimit -n 1048576` is refused without CAP_SYS_RESOURCE) run it directly.
    if [ -d /run/systemd/system ]; then
        systemctl start docker || true
    fi
    if ! "$DOCKER" info >/dev/null 2>&1; then
        log "starting dockerd (log: /var/log/dockerd.log)"
        nohup /usr/sbin/dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        if "$DOCKER" info >/dev/null 2>&1; then
            log "dockerd running: started"
            return
        fi
        sleep 1
    done
    log "dockerd did not answer within 60 s; last log lines:"
    tail -n 20 /var/log/dockerd.log >&2 || true
    exit 1
}

build_base_image() {
    local root
    root=$(mktemp -d /var/tmp/vlm-lab-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand now: $root is local
    trap "rm -rf '$root'" EXIT
    log "debootstrap $LAB_DEBIAN_SUITE into $root"
    debootstrap --variant=minbase --components="$LAB_COMPONENTS" --include="$LAB_PACKAGES" \
        "$LAB_DEBIAN_SUITE" "$root" "$LAB_DEBIAN_MIRROR" >"$LAB_DIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$LAB_DIR/debootstrap.log" >&2; exit 1; }
    cat >"$root/etc/apt/sources.list" <<EOF
deb $LAB_DEBIAN_MIRROR $LAB_DEBIAN_SUITE ${LAB_COMPONENTS//,/ }
deb $LAB_DEBIAN_MIRROR $LAB_DEBIAN_SUITE-updates ${LAB_COMPONENTS//,/ }
deb http://deb.debian.org/debian-security $LAB_DEBIAN_SUITE-security ${LAB_COMPONENTS//,/ }
EOF
    # Container hygiene: no getty/udev units that wait for devices a container lacks; no
    # package lists or caches in the image.
    for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
        systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    # An empty package list must look stale, so `apt: cache_valid_time` updates it.
    touch -d @0 "$root/var/lib/apt/lists"
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=docker' \
        --change "LABEL org.vlm-fleet.lab.recipe=$1" \
        - "$LAB_BASE_IMAGE" >/dev/null
    rm -rf "$root"
}

ensure_lab_image() {
    # ensure_lab_image WHAT IMAGE BUILDER RECIPE_INPUTS...: build IMAGE with BUILDER unless it
    # carries the hash of its recipe (the inputs and the builder's own code) as a label.
    local what=$1 image=$2 builder=$3 recipe current
    shift 3
    recipe=$(
        {
            printf '%s\n' "$@"
            declare -f "$builder"
        } | sha256sum | cut -c1-16
    )
    current=$("$DOCKER" image inspect "$image" \
        --format '{{ index .Config.Labels "org.vlm-fleet.lab.recipe" }}' 2>/dev/null || true)
    if [ "$current" = "$recipe" ]; then
        log "$what $image (recipe $recipe): reused"
        return
    fi
    log "$what $image: building (recipe $recipe, was '${current:-absent}')"
    local start=$SECONDS
    "$builder" "$recipe"
    log "$what $image: built in $((SECONDS - start)) s"
}

build_python_image() {
    local root
    root=$(mktemp -d /var/tmp/vlm-lab-python.XXXXXX)
    # shellcheck disable=SC2064 # expand now: $root is local
    trap "rm -rf '$root'" EXIT
    log "debootstrap $LAB_DEBIAN_SUITE (python) into $root"
    debootstrap --variant=minbase --include="$LAB_PYTHON_PACKAGES" \
        "$LAB_DEBIAN_SUITE" "$root" "$LAB_DEBIAN_MIRROR" >"$LAB_DIR/debootstrap-python.log" 2>&1 \
        || { tail -n 30 "$LAB_DIR/debootstrap-python.log" >&2; exit 1; }
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'CMD ["python3"]' \
        --change "LABEL org.vlm-fleet.lab.recipe=$1" \
        - "$LAB_PYTHON_IMAGE" >/dev/null
    rm -rf "$root"
}


ensure_sshd_binary() {
    # The lost-host e2e test runs its own sshd; the package's own daemon must not start.
    if [ -x /usr/sbin/sshd ]; then
        log "packages present: openssh-server"
        return
    fi
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    apt_install openssh-server
    rm -f /usr/sbin/policy-rc.d
}

# The image is built, saved as a tarball and loaded into both molecule instances on this one
# disk: a machine short of room fails there, in the middle of a load. Say so at the start.
LAB_DISK_NEEDED_GIB=${LAB_DISK_NEEDED_GIB:-40}
report_disk() {
    local root free
    root=$("$DOCKER" info --format '{{.DockerRootDir}}')
    free=$(df --output=avail -B1G "$root" | tail -1 | tr -d ' ')
    if ((free < LAB_DISK_NEEDED_GIB)); then
        log "WARNING: $free GiB free under $root; the suite needs about $LAB_DISK_NEEDED_GIB GiB (image, its tarball, two molecule instances loading it): free space there first"
    else
        log "disk: $free GiB free under $root (the suite needs about $LAB_DISK_NEEDED_GIB GiB)"
    fi
}

main() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "lab.sh must run as root (it installs packages and starts dockerd)" >&2
        exit 1
    fi
    mkdir -p "$LAB_DIR"
    # Chromium renders the HTML report in the report tests.
    # gnupg signs the stand-in apt repository the molecule scenario serves.
    # docker-registry is the registry the image role's pull test logs in to and pulls from;
    # skopeo pushes the image there.
    # git: eval.yml and report.yml record the controller's revision, and the report test reads
    # it (a machine given the repository as an archive has none).
    apt_install docker.io debootstrap chromium gnupg docker-registry skopeo git
    ensure_sshd_binary
    ensure_dockerd
    ensure_lab_image "base image" "$LAB_BASE_IMAGE" build_base_image \
        "$LAB_DEBIAN_MIRROR" "$LAB_DEBIAN_SUITE" "$LAB_COMPONENTS" "$LAB_PACKAGES"
    ensure_lab_image "python base image" "$LAB_PYTHON_IMAGE" build_python_image \
        "$LAB_DEBIAN_MIRROR" "$LAB_DEBIAN_SUITE" "$LAB_PYTHON_PACKAGES"
    report_disk
    log "ready"
}

main "$@"
