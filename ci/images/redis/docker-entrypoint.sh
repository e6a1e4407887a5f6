#!/bin/bash
# Entrypoint of the servicematrix redis / valkey stand-in: like the official
# images, args starting with `-` (or a .conf file) go to the server, which
# runs in the foreground with protected mode off unless the args set it.
set -euo pipefail

server=${STANDIN_SERVER:-redis-server}
if [[ $# -eq 0 || ${1:-} == -* || ${1:-} == *.conf ]]; then
    set -- "$server" "$@"
fi
# Appended, not inserted: `--version` and a .conf file must stay first.
if [[ ($1 == "$server" || $1 == redis-server) && " $* " != *" --protected-mode "* ]]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
