"""Small e2e helpers on top of tests.support.stack: containers, Redis contents, Flower, logs, versions."""

import base64
import os
import re
import subprocess
import uuid

import requests

from tests.support import versions
from tests.support.stack import ROOT, Stack

# Flower's credentials when no .env sets them (docker-compose.yml defaults).
FLOWER_AUTH = (
    os.environ.get("FLOWER_USER", "admin"),
    os.environ.get("FLOWER_PASSWORD", "insecure-dev-flower-password"),
)
FINISHED = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")


def unique(prefix: str) -> str:
    """A job name no earlier test or run used."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def compose_bytes(stack: Stack, *args: str, timeout: float = 120) -> bytes:
    """`docker compose ...` for the stack, stdout as bytes (Redis values need not be UTF-8)."""
    command = ["docker", "compose", "-p", stack.project]
    for name in stack.files:
        command += ["-f", str(ROOT / name)]
    result = subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, timeout=timeout, env={**os.environ, **stack.env}
    )
    assert result.returncode == 0, (
        f"docker compose {' '.join(args[:4])} exited {result.returncode}: "
        f"{result.stderr.decode(errors='replace')[-2000:]}"
    )
    return result.stdout


def container_numbers(stack: Stack, service: str) -> list[int]:
    """The replica numbers (exec --index) of a service's running containers."""
    return sorted(
        int(c["Name"].rsplit("-", 1)[1]) for c in stack.state().get(service, []) if c["State"] == "running"
    )


def hostnames(stack: Stack, service: str) -> dict[int, str]:
    """Replica number -> hostname, asked inside each running container of the service."""
    return {
        index: stack.exec(service, "hostname", index=index).stdout.strip()
        for index in container_numbers(stack, service)
    }


def caddy_version(stack: Stack) -> str:
    """What `caddy version` says in the stack's proxy container, recorded for the versions printed
    at the end of the run (tests/support/versions.py); without a leading "v"."""
    version = stack.exec("proxy", "caddy", "version").stdout.split()[0]
    versions.record("caddy:2-alpine", version, os.environ.get("CADDY_IMAGE", "caddy:2-alpine"))
    return version.removeprefix("v")


def script(stack: Stack, name: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """scripts/<name> (backup, restore, upgrade-postgres) as an operator runs it on this stack: its
    project, and its variables in the environment (as a .env would give them)."""
    env = {**os.environ, **stack.env, "COMPOSE_DISABLE_ENV_FILE": "1"}
    return subprocess.run(
        [str(ROOT / "scripts" / name), "-p", stack.project, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def count_lines(text: str, needle: str) -> int:
    return sum(1 for line in text.splitlines() if needle in line)


# --- Redis -------------------------------------------------------------------------------------

REDIS_CLI = ("redis-cli", "--no-auth-warning")  # REDISCLI_AUTH is set in the redis container

# Every key and every value of one database, whatever the type, in one round trip.
DUMP_DB_SCRIPT = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)['ok']
  out[#out + 1] = k
  local values
  if t == 'string' then values = {redis.call('GET', k)}
  elseif t == 'list' then values = redis.call('LRANGE', k, 0, -1)
  elseif t == 'hash' then values = redis.call('HGETALL', k)
  elseif t == 'set' then values = redis.call('SMEMBERS', k)
  elseif t == 'zset' then values = redis.call('ZRANGE', k, 0, -1)
  else values = {'UNREADABLE-TYPE:' .. t} end
  for _, v in ipairs(values) do out[#out + 1] = v end
end
return out
"""


def redis_cli(stack: Stack, *args: str) -> str:
    return stack.exec("redis", *REDIS_CLI, *args).stdout


def redis_databases_with_keys(stack: Stack) -> list[int]:
    keyspace = redis_cli(stack, "INFO", "keyspace")
    return [int(n) for n in re.findall(r"^db(\d+):keys=", keyspace, re.MULTILINE)]


def redis_everything(stack: Stack) -> dict[int, bytes]:
    """db number -> every key name and value in it (raw bytes as redis-cli prints them)."""
    return {
        db: compose_bytes(
            stack, "exec", "-T", "redis", *REDIS_CLI, "-n", str(db), "EVAL", DUMP_DB_SCRIPT, "0"
        )
        for db in redis_databases_with_keys(stack)
    }


def waiting_messages(stack: Stack, queue: str = "jobs") -> str:
    """Messages in the broker queue that no worker has taken yet (headers name the task ids)."""
    return redis_cli(stack, "-n", "0", "LRANGE", queue, "0", "-1")


def queued_messages(stack: Stack, queue: str = "jobs") -> str:
    """The broker's waiting messages and those a worker took but has not acknowledged yet."""
    return waiting_messages(stack, queue) + redis_cli(stack, "-n", "0", "HVALS", "unacked")


def encodings(secret: str) -> list[bytes]:
    """secret as raw bytes and as it would look inside base64 (kombu base64-encodes message
    bodies), at each of the three alignments a base64 stream can put it at."""
    raw = secret.encode()
    forms = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        # Drop the groups that also encode the padding before it and whatever follows it.
        forms.append(encoded[4 if shift else 0 : -4])
    return forms


def contains_secret(blob: bytes | str, secret: str) -> bool:
    data = blob.encode() if isinstance(blob, str) else blob
    return any(form in data for form in encodings(secret))


# --- Flower ------------------------------------------------------------------------------------


def flower(stack: Stack, path: str, auth: tuple[str, str] | None = FLOWER_AUTH) -> requests.Response:
    return requests.get(stack.flower_url(path), auth=auth, timeout=30)


def flower_workers_online(stack: Stack) -> dict[str, bool]:
    """Flower 2.2's /api/workers?status=true: worker name -> alive (from its event state)."""
    response = flower(stack, "/api/workers?status=true")
    response.raise_for_status()
    return response.json()
