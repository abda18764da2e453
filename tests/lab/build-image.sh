#!/usr/bin/env bash
# Builds the evaluation image from docker/<context> with the lab's local base image, runs its
# verify command in a fresh container, and saves it to .lab/images/vlm-eval.tar for molecule's
# load scenario (only when the image id changed). Prints timings. Idempotent: with Docker's
# layer cache an unchanged tree rebuilds in seconds and the tarball is left alone.
#
# Environment: VLM_IMAGE_BASE (default vlm-lab/debian12-python:latest, made by lab.sh),
# VLM_CA_BUNDLE (default the system bundle; empty to build without), DOCKER (the client).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
DOCKER=${DOCKER:-/usr/bin/docker}
base=${VLM_IMAGE_BASE:-vlm-lab/debian12-python:latest}
ca_bundle=${VLM_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
images_dir=$repo/.lab/images

log() { printf 'build-image: %s\n' "$*"; }
die() { printf 'build-image: ERROR: %s\n' "$*" >&2; exit 1; }

# playbooks/vars/project.yml is the one place for these facts (flat "key: value" lines).
project() {
    local v
    v=$(sed -n "s/^$1:[[:space:]]*\"\{0,1\}\([^\"#]*\)\"\{0,1\}[[:space:]]*\(#.*\)\{0,1\}$/\1/p" \
        playbooks/vars/project.yml | sed 's/[[:space:]]*$//')
    [[ -n $v ]] || die "$1 missing from playbooks/vars/project.yml"
    printf '%s' "$v"
}
image="$(project project_image_repository):$(project project_image_tag)"
context=$(project project_image_context)
[[ -f $context/Dockerfile ]] || die "no Dockerfile in $context"
"$DOCKER" image inspect "$base" >/dev/null 2>&1 \
    || die "base image $base is missing: run 'make lab' (tests/lab/lab.sh) first"

lock_sha=$(sha256sum "$context/requirements.lock" | cut -d' ' -f1)
# The last commit that touched the context, not HEAD: unrelated commits keep the image id.
revision=$(git log -1 --format=%H -- "$context" 2>/dev/null || true)
revision=${revision:-unknown}
if [[ -n $(git status --porcelain -- "$context" 2>/dev/null) ]]; then revision+="-dirty"; fi

args=(
    --build-arg "BASE_IMAGE=$base"
    --build-arg "CONTAINER_UID=$(project project_container_uid)"
    --build-arg "CONTAINER_GID=$(project project_container_gid)"
    --build-arg "CONTAINER_USER=$(project project_container_user)"
    --build-arg "LOCK_SHA256=$lock_sha"
    --build-arg "SOURCE_REVISION=$revision"
    --build-arg "SOURCE_URL=file://$repo"
)
if [[ -n $ca_bundle ]]; then
    [[ -r $ca_bundle ]] || die "CA bundle $ca_bundle is not readable (VLM_CA_BUNDLE= to build without)"
    args+=(--secret "id=ca_bundle,src=$ca_bundle")
fi

before=$("$DOCKER" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
log "building $image from $context on $base (lock $lock_sha, revision $revision)"
start=$SECONDS
DOCKER_BUILDKIT=1 nice -n 10 "$DOCKER" build --progress=plain "${args[@]}" -t "$image" "$context"
build_s=$((SECONDS - start))
after=$("$DOCKER" image inspect --format '{{.Id}}' "$image")
size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
log "built $image $after in ${build_s} s ($((size / 1024 / 1024)) MiB)"

start=$SECONDS
"$DOCKER" run --rm --network none "$image" vlm-verify
log "verify in a fresh container: ok in $((SECONDS - start)) s"

mkdir -p "$images_dir"
tar=$images_dir/vlm-eval.tar
if [[ -f $tar && -f $tar.id && $(cat "$tar.id") == "$after" ]]; then
    log "$tar is current ($after)"
else
    start=$SECONDS
    "$DOCKER" save -o "$tar.tmp" "$image"
    mv "$tar.tmp" "$tar"
    printf '%s\n' "$after" >"$tar.id"
    log "saved $tar in $((SECONDS - start)) s ($(du -m "$tar" | cut -f1) MiB)"
fi
if [[ $before == "$after" ]]; then
    log "image unchanged"
else
    log "image changed (was ${before:-absent})"
    # Each commit is a new revision label, so a new image: the one it replaced is left without
    # a name, and a few of them fill the disk molecule's instances load the tarball onto.
    if [[ -n $before ]] && ! "$DOCKER" image inspect --format '{{.RepoTags}}' "$before" 2>/dev/null | grep -q ':'; then
        "$DOCKER" image rm "$before" >/dev/null 2>&1 && log "removed the replaced image $before" || true
    fi
fi
