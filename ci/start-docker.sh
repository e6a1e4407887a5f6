#!/usr/bin/env bash
# Start a Docker engine on this machine unless one already answers.
# Usage: ci/start-docker.sh        (root; idempotent; leaves dockerd running)
# Env:   DOCKERD_LOG (default /var/log/dockerd.log), DOCKERD_WAIT_S (default 60),
#        DOCKER_REGISTRY_MIRROR (e.g. http://127.0.0.1:5000: where a dockerd started here
#        pulls Docker Hub's images from)
set -euo pipefail

log() { printf 'start-docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

LOG_FILE=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_S=${DOCKERD_WAIT_S:-60}

engine_answers() { docker info >/dev/null 2>&1; }

wait_for_engine() {
    local polls=$((WAIT_S * 10)) i
    for ((i = 0; i < polls; i++)); do
        engine_answers && return 0
        sleep 0.1
    done
    return 1
}

if command -v docker >/dev/null 2>&1 && engine_answers; then
    log "engine already answers"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "no Docker engine answers and starting one needs root: rerun with sudo"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing docker.io (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed: check the apt sources and rerun"
fi

if pid=$(pgrep -x -o dockerd); then
    log "dockerd already running (pid $pid), waiting for it"
else
    mirror_args=()
    if [[ -n ${DOCKER_REGISTRY_MIRROR:-} ]]; then
        mirror_args=(--registry-mirror "$DOCKER_REGISTRY_MIRROR")
        log "registry mirror: $DOCKER_REGISTRY_MIRROR"
    fi
    log "starting dockerd (log: $LOG_FILE)"
    setsid nohup dockerd "${mirror_args[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
    log "dockerd pid $!"
fi

wait_for_engine || die "dockerd did not answer within ${WAIT_S}s: see $LOG_FILE"
log "engine ready (dockerd pid $(pgrep -x -o dockerd || echo '?'))"

# An engine started here keeps the containers of the one before it, which stopped with
# everything else on this machine: those that our tools made (the plugin's, testcontainers',
# and any from a stand-in image) would hold images and names a fresh runner lacks.
if [[ -z ${pid:-} ]]; then
    stale=()
    for label in io.servicematrix.run org.testcontainers servicematrix.recipe; do
        while read -r id; do stale+=("$id"); done < <(docker ps -aq --filter "label=$label")
    done
    if ((${#stale[@]})); then
        mapfile -t stale < <(printf '%s\n' "${stale[@]}" | sort -u)
        log "removing ${#stale[@]} container(s) an earlier engine left: $(docker inspect -f '{{.Name}}' "${stale[@]}" | tr -d / | tr '\n' ' ')"
        docker rm -f -v "${stale[@]}" >/dev/null
    fi
fi
