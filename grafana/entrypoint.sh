#!/bin/sh
# Grafana's entry point in Compose, in front of the image's own:
#   entrypoint: [/usr/local/bin/stack-entrypoint.sh, /run.sh]
# Grafana reads GF_SECURITY_ADMIN_PASSWORD (/run.sh fills it from ..._FILE) only when it
# creates the admin user, on its first start; on a database that exists already the variable
# changes nothing. So, on an existing database, this sets the admin's password from the secret
# first: `grafana cli admin reset-admin-password` reads it on its standard input (never a
# command line). Then it hands over to the image's entry point, unchanged.
set -eu
image_entrypoint=$1
shift
secret=${GF_SECURITY_ADMIN_PASSWORD__FILE:-/run/secrets/grafana_admin_password}
if [ -s "${GF_PATHS_DATA:-/var/lib/grafana}/grafana.db" ]; then
  grafana cli --homepath "${GF_PATHS_HOME:-/usr/share/grafana}" \
    --config "${GF_PATHS_CONFIG:-/etc/grafana/grafana.ini}" \
    admin reset-admin-password --password-from-stdin <"$secret" >/dev/null
  echo "stack-entrypoint: admin password set from $secret"
fi
exec "$image_entrypoint" "$@"
