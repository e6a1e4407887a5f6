#!/usr/bin/env bash
# The README's quickstart where a new user runs it: a fresh Debian container holding only
# Python (no server packages, no Docker engine, no caches), on this commit of the repo.
# Usage: ci/quickstart-in-container.sh [COMMAND ...]   (default: the README's two commands)
# Needs a Docker engine and the servicematrix-base:bookworm image (ci/build-images.sh).
# Env: PIP_CERT (default the system CA bundle: pip inside needs it to reach the index).
set -euo pipefail

log() { printf 'quickstart: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
IMAGE=servicematrix-quickstart:bookworm
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
COMMANDS=("$@")
[[ ${#COMMANDS[@]} -gt 0 ]] || COMMANDS=("nox -s integration" "nox")

docker image inspect servicematrix-base:bookworm >/dev/null 2>&1 \
    || die "servicematrix-base:bookworm is missing: run ci/build-images.sh first"
[[ -r $CA ]] || die "no CA bundle at $CA: set PIP_CERT to one"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/Dockerfile" <<'DOCKERFILE'
FROM servicematrix-base:bookworm
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates git >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# "Only Python": an environment whose pip may install, first on PATH.
RUN python3 -m venv /opt/python
ENV PATH=/opt/python/bin:$PATH
DOCKERFILE
docker build -q -t "$IMAGE" "$WORK" >/dev/null || die "docker build of $IMAGE failed"
# A clone, as a user has: a bundle of this commit, cloned inside.
git -C "$ROOT" bundle create --quiet "$WORK/repo.bundle" HEAD
script="set -e; git clone --quiet /work/repo.bundle /repo; cd /repo; python -m pip install -q nox"
for command in "${COMMANDS[@]}"; do
    script+="; echo '+ $command' >&2; start=\$SECONDS; $command; echo \"quickstart: '$command' took \$((SECONDS - start)) s\" >&2"
done
log "running in a fresh container: ${COMMANDS[*]}"
docker run --rm -v "$WORK:/work:ro" -v "$CA:/etc/ssl/certs/host-ca.crt:ro" \
    -e PIP_CERT=/etc/ssl/certs/host-ca.crt -e SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt \
    "$IMAGE" bash -c "$script"
