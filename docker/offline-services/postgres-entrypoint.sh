#!/bin/sh
# The official postgres image's start-up contract, reduced to what docker/compose.yml uses: on an
# empty PGDATA, initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD, scram-sha-256 for
# TCP clients, listen on all addresses, and create POSTGRES_DB; then exec the command (postgres).
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] || { echo "POSTGRES_PASSWORD is required" >&2; exit 1; }
  pwfile=/tmp/.initdb-password.$$
  (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile")
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi
exec "$@"
