#!/bin/bash
# The postgres service's entry point in Compose (both images), in front of the image's own:
#   entrypoint: [/usr/local/bin/stack-entrypoint.sh, docker-entrypoint.sh]
# The image sets passwords only when it creates its cluster (POSTGRES_PASSWORD, then
# /docker-entrypoint-initdb.d/); on a cluster that exists already, this sets every role's
# password from the current secrets first: the SQL `make up` wrote (POSTGRES_ROLES_FILE:
# SCRAM verifiers, never the passwords; stack/postgres_roles.py), run by psql as the superuser
# over the local socket of a server that listens on no address. Then it hands over to the
# image's entry point, unchanged.
set -euo pipefail
image_entrypoint=$1
shift
roles=${POSTGRES_ROLES_FILE:-/run/secrets/postgres_roles}
sockets=${POSTGRES_SOCKET_DIR:-/var/run/postgresql}

if [ "${1:-}" = postgres ] && [ -s "$PGDATA/PG_VERSION" ]; then
  as_postgres=()
  if [ "$(id -u)" = 0 ]; then
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  "${as_postgres[@]}" pg_ctl -D "$PGDATA" -w -s \
    -o "-c listen_addresses='' -k $sockets" start
  status=0
  "${as_postgres[@]}" psql -v ON_ERROR_STOP=1 -q -h "$sockets" \
    --username "${POSTGRES_USER:-postgres}" --dbname postgres -f "$roles" || status=$?
  "${as_postgres[@]}" pg_ctl -D "$PGDATA" -m fast -w -s stop
  if [ "$status" != 0 ]; then
    echo "stack-entrypoint: setting the roles' passwords from $roles failed" >&2
    exit "$status"
  fi
  echo "stack-entrypoint: roles' passwords set from $roles"
fi
exec "$image_entrypoint" "$@"
