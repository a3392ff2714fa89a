#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d): a login role for postgres_exporter with pg_monitor (read-only
# statistics, no table data), its password from the mounted secret file. The native runtime
# runs it too, with POSTGRES_EXPORTER_PASSWORD_FILE pointing at its copy of the secret.
set -eu
password_file=${POSTGRES_EXPORTER_PASSWORD_FILE:-/run/secrets/postgres_exporter_password}
if [ ! -s "$password_file" ]; then
  echo "create-monitoring-role: $password_file is missing or empty" >&2
  exit 1
fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set password="$(cat "$password_file")" <<'SQL'
CREATE ROLE postgres_exporter LOGIN PASSWORD :'password' CONNECTION LIMIT 3;
GRANT pg_monitor TO postgres_exporter;
SQL
