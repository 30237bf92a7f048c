#!/bin/bash
# Entrypoint of the CI stand-in for rabbitmq:4-management-alpine, written after upstream's
# docker-entrypoint.sh: started as root with a rabbitmq* command, it hands the data directory to
# the rabbitmq user and runs as that user; long host names switch on RABBITMQ_USE_LONGNAME.
set -euo pipefail

if [[ "$1" == rabbitmq* ]] && [ "$(id -u)" = '0' ]; then
	if [ "$1" = 'rabbitmq-server' ]; then
		find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' +
	fi
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$BASH_SOURCE" "$@"
fi

if [ -z "${RABBITMQ_USE_LONGNAME:-}" ] && [ "$(hostname)" != "$(hostname -s)" ]; then
	export RABBITMQ_USE_LONGNAME=true
fi

exec "$@"
