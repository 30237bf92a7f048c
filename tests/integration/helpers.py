"""Helpers of the integration tests: API clients with real knox tokens, raw Redis reads, worker log.

Everything here talks to the real services started by tests/conftest.py; nothing is faked.
"""

import re
import socket
import uuid
from dataclasses import dataclass

import redis
from celery import current_app
from django.conf import settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from jobs import job_store
from jobs.base import KINDS
from tests.support.stack import ARTIFACTS
from tests.support.wait import wait_until

WORKER_LOG = ARTIFACTS / "integration-it-worker.log"
# The session worker of tests/integration/conftest.py (--hostname=it-worker@%h).
WORKER_NODE = f"it-worker@{socket.gethostname()}"
JOBS_URL = "/api/jobs/"
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass
class Caller:
    """One API client holding one real knox token."""

    user: object
    token: str
    client: APIClient

    def submit(self, kind: str, params: dict | None = None, name: str | None = None, rerun: bool = False):
        body: dict = {"kind": kind, "params": params or {}}
        if name is not None:
            body["name"] = name
        if rerun:
            body["rerun"] = True
        return self.client.post(JOBS_URL, body, format="json")

    def get(self, job_id: str):
        return self.client.get(f"{JOBS_URL}{job_id}/")

    def delete(self, job_id: str):
        return self.client.delete(f"{JOBS_URL}{job_id}/")

    def wait_for_state(self, job_id: str, *states: str, timeout: float = 30) -> dict:
        def reached():
            body = self.get(job_id).json()
            return body if body["state"] in states else None

        return wait_until(
            reached, timeout=timeout, interval=0.05, what=f"job {job_id} to reach {'/'.join(states)}"
        )


def make_caller(username: str) -> Caller:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=username)
    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return Caller(user, token, client)


def redis_client(db: int) -> redis.Redis:
    return redis.Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        password=settings.REDIS_PASSWORD,
        db=db,
        protocol=2,
        socket_timeout=5,
    )


def redis_databases() -> int:
    return int(redis_client(0).config_get("databases")["databases"])


def redis_dump() -> dict[tuple[int, bytes], list[bytes]]:
    """Every key of every Redis database with all the bytes it holds (any data type)."""
    dump: dict[tuple[int, bytes], list[bytes]] = {}
    for db in range(redis_databases()):
        client = redis_client(db)
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"string":
                values = [client.get(key) or b""]
            elif kind == b"hash":
                values = [part for pair in client.hgetall(key).items() for part in pair]
            elif kind == b"list":
                values = client.lrange(key, 0, -1)
            elif kind == b"set":
                values = list(client.smembers(key))
            elif kind == b"zset":
                values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"none":  # expired or consumed between SCAN and TYPE
                continue
            else:
                values = [client.dump(key) or b""]
            dump[(db, key)] = values
        client.close()
    return dump


def redis_keys() -> set[tuple[int, bytes]]:
    keys = set()
    for db in range(redis_databases()):
        client = redis_client(db)
        keys.update((db, key) for key in client.scan_iter(count=1000))
        client.close()
    return keys


def meta_key(job_id: str) -> bytes:
    return current_app.backend.get_key_for_task(job_id)


def queue_length(queue: str = "jobs") -> int:
    """Messages waiting in a broker queue (kombu's Redis transport keeps one list per queue)."""
    return redis_client(0).llen(queue)


def worker_log() -> str:
    return WORKER_LOG.read_text(errors="replace")


def received_count(kind: str, job_id: str) -> int:
    return len(re.findall(rf"Task jobs\.{kind}\[{job_id}\] received", worker_log()))


def succeeded_count(kind: str, job_id: str) -> int:
    return len(re.findall(rf"Task jobs\.{kind}\[{job_id}\] succeeded", worker_log()))


def wait_in_log(pattern: str, timeout: float = 30) -> re.Match:
    return wait_until(
        lambda: re.search(pattern, worker_log()),
        timeout=timeout,
        interval=0.1,
        what=f"/{pattern}/ in {WORKER_LOG}",
    )


def worker_idle(node: str = WORKER_NODE) -> bool:
    """The worker runs no task and holds none reserved (asked over the broker, not guessed)."""
    inspect = current_app.control.inspect(destination=[node], timeout=2.0)
    active, reserved = inspect.active(), inspect.reserved()
    return bool(active and reserved and not active.get(node) and not reserved.get(node))


def wait_worker_idle(timeout: float = 30) -> None:
    wait_until(worker_idle, timeout=timeout, interval=0.2, what=f"{WORKER_NODE} to be idle")


def send(kind: str, queue: str, **params) -> str:
    """Publish a job of this kind straight to a queue of the test's own (the session worker
    consumes only "jobs"), with its PENDING record as a submission writes it."""
    job_id = str(uuid.uuid4())
    job_store.write_meta(job_id, "PENDING", {"hostname": None, "started_at": None})
    KINDS[kind].task.apply_async(kwargs=params, task_id=job_id, queue=queue)
    return job_id


def state(job_id: str) -> dict:
    return job_store.read_meta(job_id) or {}
