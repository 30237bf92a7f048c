#!/bin/sh
# Entrypoint of the CI stand-in for redis:8-alpine; behaves like upstream's docker-entrypoint.sh
# of the 8.x images (POSIX sh, as theirs).
set -eu

# First arg is an option (`-f`, `--some-option`) or a config file (`something.conf`): run redis-server with it.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# Started as root (no --user): give /data to redis and drop privileges, re-running this script as redis.
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Files Redis writes (dump, AOF) readable by its user only, unless a umask was chosen.
if [ "$(umask)" = 0022 ]; then
	umask 0077
fi

# Every module in the modules directory loaded, as upstream (this image ships none).
if [ "$1" = redis-server ]; then
	for module in /usr/local/lib/redis/modules/*.so; do
		if [ -s "$module" ] && [ -r "$module" ]; then
			set -- "$@" --loadmodule "$module"
		fi
	done
fi

# exec, so the command is PID 1 and gets SIGTERM (redis then saves and exits).
exec "$@"
