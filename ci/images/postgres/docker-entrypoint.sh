#!/bin/bash
# Entrypoint of the servicematrix postgres stand-in. Honours the official
# image's contract (POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB,
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, `-c x=y` args) but the
# cluster is made at build time: a start applies the requested role and
# database in single-user mode, so TCP opens only once they exist.
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
# Until the first start configured the cluster: "BOOTSTRAP_SUPERUSER [SPARE_DATABASE]".
FRESH_MARK=$PGDATA/servicematrix-fresh
# Made at build time and renamed at start: CREATE DATABASE would cost 0.3 s.
SPARE_DB=servicematrix_spare

die() { echo "docker-entrypoint: error: $*" >&2; exit 1; }
ident() { printf '"%s"' "${1//\"/\"\"}"; }
literal() { printf "'%s'" "${1//\'/\'\'}"; }

create_database() {  # NAME [OWNER]: FILE_COPY, as WAL_LOG (15+) costs 1.5 s more
    local sql="CREATE DATABASE $1${2:+ OWNER $2}"
    (($(<"$PGDATA/PG_VERSION") < 15)) || sql+=" STRATEGY FILE_COPY"
    printf '%s\n' "$sql"
}

single_user() {  # SQL statements, one a line, with no listener open
    local out
    out=$(printf '%s;\n' "$@" | postgres --single -D "$PGDATA" postgres 2>&1 >/dev/null)
    [[ $out != *ERROR:* ]] || die "configuring the cluster failed: $out"
}

new_cluster() {  # SUPERUSER [SPARE_DATABASE]
    local extra=()
    read -ra extra <<<"${POSTGRES_INITDB_ARGS:-}"
    initdb --username="$1" --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust \
        --auth-host=scram-sha-256 "${extra[@]}" >/dev/null
    printf "listen_addresses = '*'\npassword_encryption = 'scram-sha-256'\n" >>"$PGDATA/postgresql.conf"
    if [[ -n ${2:-} ]]; then
        single_user "$(create_database "$2")"
    fi
    printf '%s %s\n' "$1" "${2:-}" >"$FRESH_MARK"
}

configure() {
    local user=${POSTGRES_USER:-postgres} auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    local db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}} password="PASSWORD NULL" sql=() boot spare
    read -r boot spare <"$FRESH_MARK"
    if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
        password="PASSWORD $(literal "$POSTGRES_PASSWORD")"
    elif [[ $auth != trust ]]; then
        die "POSTGRES_PASSWORD is not set: pass -e POSTGRES_PASSWORD=... (or -e POSTGRES_HOST_AUTH_METHOD=trust)"
    fi
    if [[ $user == "$boot" ]]; then
        sql+=("ALTER ROLE $(ident "$user") $password")
    else
        sql+=("CREATE ROLE $(ident "$user") SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS LOGIN $password")
    fi
    if [[ $db != postgres && -n $spare ]]; then
        sql+=("ALTER DATABASE $spare RENAME TO $(ident "$db")" "ALTER DATABASE $(ident "$db") OWNER TO $(ident "$user")")
    elif [[ $db != postgres ]]; then
        sql+=("$(create_database "$(ident "$db")" "$(ident "$user")")")
    elif [[ -n $spare ]]; then
        sql+=("DROP DATABASE $spare")
    fi
    single_user "${sql[@]}"
    printf 'local all all trust\nlocal replication all trust\nhost all all all %s\nhost replication all all %s\n' \
        "$auth" "$auth" >"$PGDATA/pg_hba.conf"
    rm "$FRESH_MARK"
}

if [[ ${1:-} == initdb-template ]]; then  # image build: the cluster every container starts from
    new_cluster postgres "$SPARE_DB"
    exit 0
fi
if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
wants_help() {  # the official image skips all setup for these
    local arg
    for arg; do
        case $arg in -V | --version | -\? | --help | --describe-config) return 0 ;; esac
    done
    return 1
}

if [[ ${1:-} == postgres ]] && ! wants_help "$@"; then
    if [[ $(id -u) == 0 ]]; then
        mkdir -p "$PGDATA"
        chown postgres:postgres "$PGDATA"
        chmod 700 "$PGDATA"
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
    fi
    if [[ -n ${POSTGRES_INITDB_ARGS:-} && -e $FRESH_MARK ]]; then
        rm -rf "${PGDATA:?}"/*  # the build-time cluster lacks the requested initdb args
    fi
    [[ -s $PGDATA/PG_VERSION ]] || new_cluster "${POSTGRES_USER:-postgres}"
    [[ ! -e $FRESH_MARK ]] || configure
fi
exec "$@"
