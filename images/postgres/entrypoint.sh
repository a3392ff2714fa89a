#!/bin/bash
# The postgres image's contract, for Debian's PostgreSQL: as root, own the data directory and
# drop to the postgres user; on an empty data directory, initdb (superuser POSTGRES_USER,
# password from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, POSTGRES_INITDB_ARGS, then a
# `host all all all` line with POSTGRES_HOST_AUTH_METHOD), create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sh and *.sql against a socket-only server (psql given the
# superuser's password, as the image's PGPASSWORD does, through a 0600 PGPASSFILE in a private
# directory, removed after), then start for real, listening on every address. The socket
# directory is the postgres user's alone (0700).
set -euo pipefail

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "entrypoint: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
  exit 1
fi

chmod 700 /var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as in the image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start
  export PGHOST=/var/run/postgresql
  private=$(mktemp -d)  # 0700
  trap 'rm -rf "$private"' EXIT
  escaped=${POSTGRES_PASSWORD//\\/\\\\}
  (umask 077 && printf '*:*:*:%s:%s\n' "$POSTGRES_USER" "${escaped//:/\\:}" > "$private/pgpass")
  export PGPASSFILE=$private/pgpass
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) echo "entrypoint: running $script"; bash "$script" ;;
      *.sql) echo "entrypoint: running $script"
             psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$script" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  rm -rf "$private"
  unset PGHOST PGPASSFILE
fi

exec postgres -c listen_addresses='*' -k /var/run/postgresql "${@:2}"
