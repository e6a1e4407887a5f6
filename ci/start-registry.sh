#!/usr/bin/env bash
# A Docker registry on loopback (Debian's docker-registry), for dockerd to use as its
# registry mirror: images pushed there under their official names (library/postgres:16)
# are what `docker pull postgres:16` gets, as on a runner or behind a company mirror.
# Usage: ci/start-registry.sh      (root; idempotent; leaves the registry running)
# Env:   REGISTRY_ADDR (default 127.0.0.1:5000), REGISTRY_DIR (default
#        /var/lib/servicematrix-registry: kept between runs), REGISTRY_WAIT_S (default 30)
set -euo pipefail

log() { printf 'start-registry: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
DIR=${REGISTRY_DIR:-/var/lib/servicematrix-registry}
WAIT_S=${REGISTRY_WAIT_S:-30}

answers() {
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://$ADDR/v2/" >/dev/null 2>&1
}

if answers; then
    log "registry already answers on $ADDR"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || die "starting the registry needs root: rerun with sudo"
if ! command -v docker-registry >/dev/null 2>&1; then
    log "installing docker-registry (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry \
        >/dev/null || die "apt-get install docker-registry failed: check the apt sources and rerun"
fi
mkdir -p "$DIR/data"
cat >"$DIR/config.yml" <<CONFIG
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
CONFIG
log "starting docker-registry on $ADDR (log: $DIR/registry.log)"
setsid nohup docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null &
log "registry pid $!"
for ((i = 0; i < WAIT_S * 10; i++)); do
    answers && { log "registry ready"; exit 0; }
    sleep 0.1
done
die "the registry did not answer on $ADDR within ${WAIT_S}s: see $DIR/registry.log"
