#!/bin/bash
# Entrypoint of the CI stand-in for rabbitmq:4-management-alpine, written after upstream's
# docker-entrypoint.sh (4.3): started as root with a rabbitmq* command, it hands the data
# directory to the rabbitmq user and runs as that user; the variables upstream no longer honours
# stop the start; long host names switch on RABBITMQ_USE_LONGNAME.
set -euo pipefail

if [[ "$1" == rabbitmq* ]] && [ "$(id -u)" = '0' ]; then
	if [ "$1" = 'rabbitmq-server' ]; then
		find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' +
	fi
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$BASH_SOURCE" "$@"
fi

# Settings that only a configuration file (conf.d) may give now, as upstream refuses them.
old=
for name in RABBITMQ_DEFAULT_PASS_FILE RABBITMQ_DEFAULT_USER_FILE RABBITMQ_MANAGEMENT_SSL_CACERTFILE \
	RABBITMQ_MANAGEMENT_SSL_CERTFILE RABBITMQ_MANAGEMENT_SSL_DEPTH RABBITMQ_MANAGEMENT_SSL_FAIL_IF_NO_PEER_CERT \
	RABBITMQ_MANAGEMENT_SSL_KEYFILE RABBITMQ_MANAGEMENT_SSL_VERIFY RABBITMQ_SSL_CACERTFILE RABBITMQ_SSL_CERTFILE \
	RABBITMQ_SSL_DEPTH RABBITMQ_SSL_FAIL_IF_NO_PEER_CERT RABBITMQ_SSL_KEYFILE RABBITMQ_SSL_VERIFY \
	RABBITMQ_VM_MEMORY_HIGH_WATERMARK; do
	if [ -n "${!name:-}" ]; then
		echo >&2 "error: $name is set but deprecated"
		old=1
	fi
done
if [ -n "$old" ]; then
	echo >&2 'error: deprecated environment variables detected; use a configuration file instead'
	exit 1
fi

if [ -z "${RABBITMQ_USE_LONGNAME:-}" ] && [ "$(hostname)" != "$(hostname -s)" ]; then
	export RABBITMQ_USE_LONGNAME=true
fi

exec "$@"
