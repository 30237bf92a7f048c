#!/bin/sh
# Entrypoint of the CI stand-in for docker:dind; written after upstream's dockerd-entrypoint.sh.
# Same contract: no arguments (or only dockerd options) runs dockerd listening on the unix
# socket and tcp://0.0.0.0:2375; `dockerd ...` runs that; anything else is run as given.
# Simplified: no TLS certificates are generated, so DOCKER_TLS_CERTDIR must stay empty (upstream
# defaults it to /certs and then listens on 2376 with TLS).
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
		echo >&2 "error: this stand-in does not generate TLS certificates; run it with DOCKER_TLS_CERTDIR= (plain tcp 2375 on a private network)"
		exit 1
	fi
	set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false "$@"
fi

if [ "$1" = dockerd ]; then
	# A node that was killed leaves its pid files behind; dockerd would refuse to start again.
	# Also containerd's: after a hard stop (the bed SIGKILLs dockerd) a stale containerd.pid may
	# name a live process of the new container (PIDs start again from 1), and dockerd then waits
	# for a containerd that is not there, with its API unanswered.
	find /run /var/run \( -iname 'docker*.pid' -o -iname 'containerd*.pid' \) -delete || :

	# What --privileged would give, for engines that cannot grant it (a host whose bounding set
	# lacks a capability makes `--privileged` fail): run with every capability it has, no
	# seccomp/apparmor/masked paths and all devices, and this makes /sys and the cgroup v1
	# hierarchies writable, so the inner dockerd can create its containers' cgroups.
	# Under --privileged they are writable already and nothing changes.
	if grep -qE '^sysfs /sys sysfs ro[,\ ]' /proc/self/mounts; then
		mount -o remount,rw /sys
	fi
	awk '$3 == "cgroup" && $4 ~ /(^|,)ro(,|$)/ { print $2 }' /proc/self/mounts | while read -r m; do
		mount -o remount,bind,rw "$m"
	done
	if [ -d /sys/kernel/security ] && ! mountpoint -q /sys/kernel/security; then
		mount -t securityfs none /sys/kernel/security || :
	fi

	# docker-init (tini) as PID 1 reaps the shims dockerd leaves behind (as upstream does).
	set -- docker-init -- "$@"
fi

exec "$@"
