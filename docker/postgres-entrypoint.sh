#!/bin/sh
# First start: initdb in UTF-8 with POSTGRES_USER as the superuser, its password from
# POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD (never on a command line), POSTGRES_DB
# created; password logins from anywhere. Then the server, in the foreground.
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    cat "$POSTGRES_PASSWORD_FILE" > "$pwfile"
  else
    printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" > "$pwfile"
  fi
  initdb -D "$PGDATA" -U "$user" --pwfile "$pwfile" --auth scram-sha-256 \
    -E UTF8 --locale C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    postgres --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE DATABASE "$db" OWNER "$user";
SQL
  fi
fi
exec "$@"
