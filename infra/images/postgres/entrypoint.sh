#!/bin/sh
# PostgreSQL for the kreg charts (charts/postgres.ts), started as its own user (uid 999) with a
# read-only root filesystem. The same contract as the official image: POSTGRES_PASSWORD,
# POSTGRES_USER, POSTGRES_DB, PGDATA (a subfolder of the data volume). It initialises an empty
# volume on first start and, at every start, sets the role's password from POSTGRES_PASSWORD (the
# credentials Secret), so the Secret stays the one truth. Then it becomes the server (PID 1; the
# image's stop signal is SIGINT, a fast shutdown).
set -eu
: "${PGDATA:?PGDATA must be set: a folder inside the data volume}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (from the credentials Secret)}"
role=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$role}
say() { echo "postgres-entrypoint: $*" >&2; }
# Names and the password go into SQL text; allow only what needs no quoting.
case "$role$database" in *[!a-z0-9_]*) say "POSTGRES_USER and POSTGRES_DB must be lowercase letters, digits and _"; exit 2 ;; esac
case "$POSTGRES_PASSWORD" in *[!A-Za-z0-9._~+/=-]*) say "POSTGRES_PASSWORD may only hold letters, digits and ._~+/=-"; exit 2 ;; esac

# Single-user mode runs SQL with no network and no other session: before the server opens.
single() { postgres --single -j -D "$PGDATA" -c listen_addresses= -c unix_socket_directories=/tmp postgres >/dev/null; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  initdb -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --data-checksums >/dev/null
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  if [ "$role" != postgres ]; then printf 'CREATE ROLE %s LOGIN;\n' "$role" | single; fi
  if [ "$database" != postgres ]; then printf 'CREATE DATABASE %s OWNER %s;\n' "$database" "$role" | single; fi
  say "initialised $PGDATA: role $role, database $database"
fi
printf "ALTER ROLE %s PASSWORD '%s';\n" "$role" "$POSTGRES_PASSWORD" | single
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
