"""Re-publish jobs whose message Redis lost in a crash.

Redis writes its append-only file to disk once a second (appendfsync everysec), so a Redis
crash - not a clean stop or restart - can lose the last second of writes: a job committed to
PostgreSQL then has no message in the queue, and either no state (its PENDING write was lost
too) or a PENDING state nobody will ever change. Such a job is found here by what can be
checked: its record is older than JOB_RECOVERY_AFTER, it was not cancelled, its state is
absent or PENDING, and its id is in no message of the jobs queue nor among the messages workers
hold unacknowledged. Found twice, a few seconds apart (a message moves from the queue to the
unacknowledged set in two steps), it is published again under the same id.

Runs from beat (jobs.recover_lost_jobs, every JOB_RECOVERY_AFTER/2 seconds). Delivery stays at
least once: a job counted lost while a worker was, against all odds, between those two steps
runs twice, which every job kind must tolerate anyway (docs/reliability.md).
"""

import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import redis
from celery import states
from django.conf import settings
from django.utils import timezone

from jobs import service, store
from jobs.models import Job

logger = logging.getLogger(__name__)
BATCH = 1000
# kombu's Redis transport keeps messages of priority > 0 in lists named queue + sep + step.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
UNACKED_HASH = "unacked"  # kombu's default unacked_key


def looks_lost(meta: dict | None) -> bool:
    """No state at all, or PENDING: what a job whose message is gone shows (pure)."""
    return meta is None or meta.get("status") == states.PENDING


UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def not_in_flight(job_ids: Iterable[str], messages: list[bytes]) -> list[str]:
    """The ids that appear in none of the raw broker messages (pure).

    Every uuid in a message counts (its id, but also root_id, parent_id): erring towards "in
    flight" is the safe side. One pass over the messages, however many ids are asked about."""
    seen = {match.decode() for raw in messages for match in UUID.findall(raw)}
    return [job_id for job_id in job_ids if job_id not in seen]


def window(now: datetime, after: float, expires: float) -> tuple[datetime, datetime]:
    """Submission times worth checking: old enough to have started, young enough that an
    absent state means lost rather than expired (10 minutes' margin before the expiry)."""
    return now - timedelta(seconds=max(expires - 600, after)), now - timedelta(seconds=after)


def _candidates(oldest: datetime, newest: datetime) -> list[Job]:
    jobs = (Job.objects.filter(cancelled_at=None, submitted_at__gte=oldest, submitted_at__lt=newest)
            .only("id", "kind", "params", "owner", "user", "name", "run", "submitted_at")
            .order_by("submitted_at"))
    return [job for batch in itertools.batched(jobs.iterator(chunk_size=BATCH), BATCH)
            for job in _lost_states(list(batch))]


def _lost_states(jobs: list[Job]) -> list[Job]:
    metas = store.read_many([job.id for job in jobs])
    return [job for job, meta in zip(jobs, metas, strict=True) if looks_lost(meta)]


def _broker_messages() -> list[bytes]:
    """Every message waiting in the jobs queue or held unacknowledged by a worker, raw."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    with redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                              socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT) as client:
        with client.pipeline(transaction=True) as pipe:  # one snapshot of the lists and the hash
            for suffix in PRIORITY_SUFFIXES:
                pipe.lrange(queue + suffix, 0, -1)
            pipe.hvals(UNACKED_HASH)
            return [message for replies in pipe.execute() for message in replies]


def _not_in_flight(jobs: list[Job]) -> list[Job]:
    if not jobs:
        return []
    free = set(not_in_flight([job.id for job in jobs], _broker_messages()))
    return [job for job in jobs if job.id in free]


def find_lost(now: datetime | None = None, settle: float = 5.0,
              sleep: Callable[[float], None] = time.sleep) -> list[Job]:
    oldest, newest = window(now or timezone.now(), settings.JOB_RECOVERY_AFTER,
                            settings.CELERY_RESULT_EXPIRES)
    suspects = _not_in_flight(_candidates(oldest, newest))
    if not suspects:
        return []
    sleep(settle)
    return _not_in_flight(_lost_states(suspects))


LOCK_KEY = "jobs:recovery-lock"
LOCK_SECONDS = 300  # outlives any pass; a crashed pass only delays the next one this long


def recover_lost_jobs(**kwargs) -> list[str]:
    """Publish each lost job again under its id; returns the ids. One pass at a time: two
    overlapping passes (a beat restart, two workers) would both publish the same job."""
    client = store.backend_client()
    token = uuid.uuid4().hex.encode()
    if not client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
        logger.info("Another lost-job recovery pass is running; skipping this one")
        return []
    try:
        return _recover(**kwargs)
    finally:
        if client.get(LOCK_KEY) == token:
            client.delete(LOCK_KEY)


def _recover(**kwargs) -> list[str]:
    recovered = []
    for job in find_lost(**kwargs):
        if job.kind not in service.KINDS:
            logger.warning("Job %s looks lost but its kind %r no longer exists; left alone", job.id, job.kind)
            continue
        service.publish(job)
        logger.warning("Job %s (%s) had no message in Redis (lost in a Redis crash?); published again",
                       job.id, job.kind)
        recovered.append(job.id)
    return recovered
