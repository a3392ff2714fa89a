#!/bin/bash
# The postgres service's entry point in Compose (both images), in front of the image's own:
#   entrypoint: [/usr/local/bin/stack-entrypoint.sh, docker-entrypoint.sh]
# The image makes its roles only when it creates its cluster (POSTGRES_PASSWORD, then
# /docker-entrypoint-initdb.d/, where postgres/initdb-roles.sh applies the roles). On a
# cluster that exists already, before anything listens, this makes the roles what the current
# secrets say: the SQL `make up` wrote (POSTGRES_ROLES_FILE: the app's role, which owns its
# schema and nothing more, and every role's SCRAM verifier, never a password;
# stack/postgres_roles.py), run in the database POSTGRES_DB by PostgreSQL's single-user mode,
# which is no connection: no password to hold, so a changed superuser password takes effect
# like the others. A cluster made before the app got its own role (issue 14: the app's role is
# its superuser, its socket trusts every local user) is refused, with what to do. Then it hands
# over to the image's entry point, unchanged.
set -euo pipefail
image_entrypoint=$1
shift
roles=${POSTGRES_ROLES_FILE:-/run/secrets/postgres_roles}
database=${POSTGRES_DB:-postgres}
legacy="stack-entrypoint: this cluster was made before the app got its own database role
(issue 14): the app's role is its superuser, or $PGDATA/pg_hba.conf trusts connections
without a password. dev: \`make clean ENV=dev RUNTIME=compose\` removes its data (the volumes),
then \`make up\` makes a new one. With data to keep: docs/security.md, section 3."

if [ "${1:-}" = postgres ] && [ -s "$PGDATA/PG_VERSION" ]; then
  # any non-comment line whose method is trust
  if grep -Eq '^[[:space:]]*[^#[:space:]].*[[:space:]]trust([[:space:]]|$)' "$PGDATA/pg_hba.conf"
  then
    echo "$legacy" >&2
    exit 1
  fi
  as_postgres=()
  if [ "$(id -u)" = 0 ]; then
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  # -j: a statement ends with a semicolon and an empty line; exit_on_error: exit 1 at the
  # first error; a failed statement (a verifier) is never logged
  status=0
  { cat "$roles"; printf '\n\n'; } | "${as_postgres[@]}" postgres --single -j \
    -c exit_on_error=on -c log_min_error_statement=panic -c log_checkpoints=off \
    -D "$PGDATA" "$database" > /dev/null || status=$?
  if [ "$status" != 0 ]; then
    echo "stack-entrypoint: the roles from $roles could not be applied (above)" >&2
    echo "$legacy" >&2
    exit "$status"
  fi
  echo "stack-entrypoint: roles and passwords set from $roles"
fi
exec "$image_entrypoint" "$@"
