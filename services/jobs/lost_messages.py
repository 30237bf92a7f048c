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

A pass costs the same whatever the backlog: it looks at most at BATCH jobs (the oldest
unfinished ones in the window, through a partial index), reads the broker in replies of CHUNK
messages, and reads at most JOB_RECOVERY_SCAN_LIMIT messages of each list and of the
unacknowledged hash.
When the queue is longer than that, the jobs it did not find there are left for a later pass,
once the backlog is shorter: a job published again would queue behind that backlog anyway.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from celery import states
from django.conf import settings
from django.utils import timezone

from jobs import job_store, publisher
from jobs.base import KINDS
from jobs.models import Job

logger = logging.getLogger(__name__)
BATCH = 1000  # jobs looked at per pass
CHUNK = 200  # messages per Redis reply
# kombu's Redis transport keeps messages of priority > 0 in lists named queue + sep + step.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
UNACKED_HASH = "unacked"  # kombu's default unacked_key


def looks_lost(meta: dict | None) -> bool:
    """No state at all, or PENDING: what a job whose message is gone shows (pure)."""
    return meta is None or meta.get("status") == states.PENDING


UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def mentioned(job_ids: Iterable[str], messages: Iterable[bytes]) -> set[str]:
    """The ids that appear in the raw broker messages (pure).

    Every uuid in a message counts (its id, but also root_id, parent_id): erring towards "in
    flight" is the safe side. One pass over the messages, however many ids are asked about."""
    seen = {match.decode() for raw in messages for match in UUID.findall(raw)}
    return {job_id for job_id in job_ids if job_id in seen}


def not_in_flight(job_ids: Iterable[str], messages: list[bytes]) -> list[str]:
    """The ids that appear in none of the raw broker messages (pure)."""
    job_ids = list(job_ids)
    found = mentioned(job_ids, messages)
    return [job_id for job_id in job_ids if job_id not in found]


def window(now: datetime, after: float, expires: float) -> tuple[datetime, datetime]:
    """Submission times worth checking: old enough to have started, young enough that an
    absent state means lost rather than expired (10 minutes' margin before the expiry)."""
    return now - timedelta(seconds=max(expires - 600, after)), now - timedelta(seconds=after)


def _candidates(oldest: datetime, newest: datetime) -> list[Job]:
    """The oldest unfinished jobs of the window (at most BATCH) whose state looks lost."""
    jobs = list(
        Job.objects.filter(
            finished_at=None, cancelled_at=None, submitted_at__gte=oldest, submitted_at__lt=newest
        )
        .only("id", "kind", "params", "owner", "user", "name", "run", "submitted_at")
        .order_by("submitted_at")[:BATCH]
    )
    return _lost_states(jobs)


def _lost_states(jobs: list[Job]) -> list[Job]:
    metas = job_store.read_many([job.id for job in jobs])
    return [job for job, meta in zip(jobs, metas, strict=True) if looks_lost(meta)]


@dataclass
class BrokerScan:
    """What one look at the broker read: for the pass's log line and the capacity tests."""

    messages: int = 0  # messages read
    replies: int = 0  # Redis replies they came in
    largest_reply: int = 0  # bytes of message data in the largest reply
    complete: bool = True  # every list and the hash were read to the end

    def took(self, values: Iterable[bytes]) -> list[bytes]:
        values = list(values)
        self.messages += len(values)
        self.replies += 1
        self.largest_reply = max(self.largest_reply, sum(len(value) for value in values))
        return values


def _scan_list(client, name: str, wanted: set[str], scan: BrokerScan) -> set[str]:
    """The ids of `wanted` found in a queue list, read from its head (the newest messages)
    CHUNK at a time. Reading from the head skips nothing while the list changes: publishing
    pushes at the head (shifting what is unread further on, to be read twice at worst), workers
    take from the tail, and nothing is removed from the head."""
    found: set[str] = set()
    for start in range(0, settings.JOB_RECOVERY_SCAN_LIMIT, CHUNK):
        chunk = scan.took(client.lrange(name, start, start + CHUNK - 1))
        found |= mentioned(wanted - found, chunk)
        if len(chunk) < CHUNK or found == wanted:
            return found
    scan.complete = False
    return found


def _scan_unacked(client, wanted: set[str], scan: BrokerScan) -> set[str]:
    found: set[str] = set()
    cursor, read = 0, 0
    while True:
        cursor, entries = client.hscan(UNACKED_HASH, cursor, count=CHUNK)
        values = scan.took(entries.values())
        read += len(values)
        found |= mentioned(wanted - found, values)
        if cursor == 0 or found == wanted:
            return found
        if read >= settings.JOB_RECOVERY_SCAN_LIMIT:
            scan.complete = False
            return found


def in_flight(job_ids: Iterable[str], scan: BrokerScan | None = None) -> set[str]:
    """The ids that may be in flight: found in a message waiting in the jobs queue or held
    unacknowledged by a worker - or all of them when the broker holds more than a pass reads
    (erring towards "in flight" is the safe side). The lists are read before the hash: a
    message a worker takes meanwhile moves from a list into the hash."""
    wanted = set(job_ids)
    scan = scan if scan is not None else BrokerScan()
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    found: set[str] = set()
    with redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
    ) as client:
        for suffix in PRIORITY_SUFFIXES:
            if found == wanted:
                break
            found |= _scan_list(client, queue + suffix, wanted - found, scan)
        if found != wanted:
            found |= _scan_unacked(client, wanted - found, scan)
    return wanted if not scan.complete else found


def _not_in_flight(jobs: list[Job], scan: BrokerScan) -> list[Job]:
    if not jobs:
        return []
    held = in_flight([job.id for job in jobs], scan)
    return [job for job in jobs if job.id not in held]


def find_lost(
    now: datetime | None = None,
    settle: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    scan: BrokerScan | None = None,
) -> list[Job]:
    oldest, newest = window(
        now or timezone.now(), settings.JOB_RECOVERY_AFTER, settings.CELERY_RESULT_EXPIRES
    )
    scan = scan if scan is not None else BrokerScan()
    suspects = _not_in_flight(_candidates(oldest, newest), scan)
    if not suspects:
        return []
    sleep(settle)
    return _not_in_flight(_lost_states(suspects), scan)


LOCK_KEY = "jobs:recovery-lock"
LOCK_SECONDS = 300  # outlives any pass; a crashed pass only delays the next one this long


def recover_lost_jobs(scan: BrokerScan | None = None, **kwargs) -> list[str]:
    """Publish each lost job again under its id; returns the ids. One pass at a time: two
    overlapping passes (a beat restart, two workers) would both publish the same job. What the
    pass read of the broker is added to `scan`."""
    client = job_store.backend_client()
    token = uuid.uuid4().hex.encode()
    if not client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
        logger.info("Another lost-job recovery pass is running; skipping this one")
        return []
    started = time.monotonic()
    scan = scan if scan is not None else BrokerScan()
    try:
        recovered = _recover(scan=scan, **kwargs)
    finally:
        if client.get(LOCK_KEY) == token:
            client.delete(LOCK_KEY)
    logger.info(
        "Lost-job recovery pass: %d published again; %d broker messages read in %d replies "
        "(largest %d bytes)%s; %.2f s",
        len(recovered),
        scan.messages,
        scan.replies,
        scan.largest_reply,
        "" if scan.complete else ", queue longer than a pass reads",
        time.monotonic() - started,
    )
    return recovered


def _recover(**kwargs) -> list[str]:
    recovered = []
    for job in find_lost(**kwargs):
        if job.kind not in KINDS:
            logger.warning("Job %s looks lost but its kind %r no longer exists; left alone", job.id, job.kind)
            continue
        publisher.publish_job(job)
        logger.warning(
            "Job %s (%s) had no message in Redis (lost in a Redis crash?); published again", job.id, job.kind
        )
        recovered.append(job.id)
    return recovered
