#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d), against its temporary socket-only server, as POSTGRES_USER
# (the superuser, with the password the image's entry point gives psql): the stack's roles from
# the SQL `make up` wrote (POSTGRES_ROLES_FILE, stack/postgres_roles.py): the app's role, which
# owns the schema public of POSTGRES_DB and nothing more, and postgres_exporter (pg_monitor),
# each password as a SCRAM verifier, never in clear. Every later start applies the same file
# before the server listens (postgres/entrypoint.sh).
set -eu
roles=${POSTGRES_ROLES_FILE:-/run/secrets/postgres_roles}
if [ ! -s "$roles" ]; then
  echo "initdb-roles: $roles is missing or empty" >&2
  exit 1
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -f "$roles"
