#!/usr/bin/env bash
# Entrypoint of the CI stand-in for redis:5.0-alpine; behaves like upstream's docker-entrypoint.sh.
set -o errexit -o pipefail -o nounset

# First arg is an option (`-f`, `--some-option`) or a config file (`something.conf`): run redis-server with it.
first=${1:-}
if [ "${first#-}" != "$first" ] || [ "${first%.conf}" != "$first" ]; then
	set -- redis-server "$@"
fi

# Started as root (no --user): give /data to redis and drop privileges, re-running this script as redis.
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# exec, so the command is PID 1 and gets SIGTERM (redis then saves and exits).
exec "$@"
