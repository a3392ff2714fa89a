#!/bin/sh
# VictoriaMetrics' entry point, in Compose (entrypoint: [/usr/local/bin/stack-entrypoint.sh,
# /victoria-metrics-prod]) and natively (in front of Debian's binary, stack/native_config.py).
# Where MONITORING_AUTH is basic, the monitoring user (stack/webauth.py): its flags
# -httpAuth.username and -httpAuth.password as environment variables, which the command's
# -envflag.enable reads, the password from its secret file; so it is in no process's argv.
# (Debian's 1.79 takes -httpAuth.password=file://... as the password itself; newer ones read
# the file. The environment works in both.) Then the binary, with PID and arguments unchanged.
set -eu
binary=$1
shift
if [ "${MONITORING_AUTH:?}" = basic ]; then
  httpAuth_username=monitoring
  httpAuth_password=$(cat "${MONITORING_PASSWORD_FILE:?}")
  export httpAuth_username httpAuth_password
fi
exec "$binary" "$@"
