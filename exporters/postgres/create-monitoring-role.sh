#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d): a login role for postgres_exporter with pg_monitor (read-only
# statistics, no table data), its password from the mounted secret file, read by psql itself
# (never in a command line). The native runtime runs it too, with
# POSTGRES_EXPORTER_PASSWORD_FILE pointing at its copy of the secret. A changed password is
# set on every later start (postgres/entrypoint.sh; natively stack/native_postgres.py).
set -eu
password_file=${POSTGRES_EXPORTER_PASSWORD_FILE:-/run/secrets/postgres_exporter_password}
if [ ! -s "$password_file" ]; then
  echo "create-monitoring-role: $password_file is missing or empty" >&2
  exit 1
fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set password_file="$password_file" <<'SQL'
\set password `cat :'password_file'`
CREATE ROLE postgres_exporter LOGIN PASSWORD :'password' CONNECTION LIMIT 3;
GRANT pg_monitor TO postgres_exporter;
SQL
