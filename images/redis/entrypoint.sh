#!/bin/sh
# `redis-server ARGS`: protected mode off first, so the Compose file's arguments still win.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
