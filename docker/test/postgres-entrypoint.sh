#!/usr/bin/env bash
# The official postgres image's start-up, reduced to what the compose stack uses (see
# postgres.Dockerfile): on an empty data folder, initdb with POSTGRES_USER and
# POSTGRES_PASSWORD, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql and
# *.sh against a temporary server on the Unix socket only; then the real server on
# every address.
set -euo pipefail

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" > /dev/null
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
    if [[ "$db" != postgres ]]; then
        psql -v ON_ERROR_STOP=1 -q --username "$user" --dbname postgres \
            -c "CREATE DATABASE \"$db\""
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
        *.sql)
            echo "postgres-entrypoint: running $file"
            psql -v ON_ERROR_STOP=1 -q --username "$user" --dbname "$db" -f "$file"
            ;;
        *.sh)
            echo "postgres-entrypoint: running $file"
            # shellcheck disable=SC1090
            . "$file"
            ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
    echo "postgres-entrypoint: database initialised"
fi

if [[ "${1:-}" == postgres ]]; then
    shift
    exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
