#!/usr/bin/env bash
# Server packages the local backend uses where wheels do not cover a version:
# PostgreSQL 15 and Redis 7 from Debian. Idempotent; needs root (or sudo) and apt.
set -euo pipefail

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
  echo "server packages: already installed" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "server packages: apt-get not found; install ${missing[*]} with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "server packages: installing ${missing[*]}" >&2
$sudo apt-get update -qq
# Debian starts services on install where it can; these servers are started per test run instead.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
