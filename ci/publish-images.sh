#!/usr/bin/env bash
# Push the stand-in images to a registry under their official names, then remove them
# from the engine: the next run starts as a fresh runner does and pulls what it needs
# (through dockerd's registry mirror).
# Usage: ci/publish-images.sh REGISTRY      e.g. ci/publish-images.sh 127.0.0.1:5000
set -euo pipefail

log() { printf 'publish-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: ci/publish-images.sh REGISTRY (e.g. 127.0.0.1:5000)"
REGISTRY=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

while read -r name; do
    # Docker Hub's official images live under library/.
    path=$name
    [[ $name == */* ]] || path=library/$name
    ref=$REGISTRY/$path
    docker image inspect "$name" >/dev/null 2>&1 || die "$name is not in the engine: run ci/build-images.sh first"
    start=$SECONDS
    docker tag "$name" "$ref"
    docker push -q "$ref" >/dev/null || die "docker push $ref failed: is the registry up (ci/start-registry.sh)?"
    docker rmi "$name" "$ref" >/dev/null
    log "$name pushed as $ref and removed from the engine ($((SECONDS - start)) s)"
done < <(bash "$HERE/build-images.sh" --list)
