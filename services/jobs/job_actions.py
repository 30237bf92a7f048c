"""What the API does with jobs: submit (deduplicated), read, list, cancel.

Kept apart from the HTTP layer so the `job` management command and tests use the same code.
"""

import logging
import uuid
from dataclasses import dataclass

from celery import current_app, states
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs import ids, job_store, metrics, presentation, publisher, redis_memory
from jobs.models import Job

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    job: Job
    meta: dict | None
    created: bool


def job_id_for(token: str, name: str, run: int = 1) -> str:
    return ids.job_id(settings.JOB_ID_SECRET, token, name, run)


def owner_for(token: str) -> str:
    return ids.owner_key(settings.JOB_ID_SECRET, token)


def latest_run(token: str, name: str) -> Job | None:
    return Job.objects.filter(owner=owner_for(token), name=name).order_by("-run").first()


def submit(
    *, user, token: str, kind: str, params: dict, name: str | None = None, rerun: bool = False
) -> Submission:
    """Start the job, or return the existing run of (token, name) if one is live.

    A finished run is returned as is unless rerun is true, which starts run n+1 under a
    fresh id (Celery would ignore a second SUCCESS under the old one).
    """
    # An unnamed job gets a fresh name, so it has no earlier run to look up (one query saved).
    latest = latest_run(token, name) if name else None
    name = name or f"job-{uuid.uuid4().hex}"
    run = 1
    if latest is not None:
        # A committed record's state is in Redis (its INSERT commits after the Redis transaction
        # that writes it, below) until it finished and was archived into the record; None once
        # it expired.
        meta = job_store.current_meta(latest, job_store.read_meta(latest.id))
        if not (rerun and presentation.is_finished(meta)):
            return Submission(latest, meta, created=False)
        run = latest.run + 1

    # Redis near its memory limit: the jobs already accepted need the rest (503, job store full).
    redis_memory.check_room_for_new_job()
    job = Job(
        id=job_id_for(token, name, run),
        owner=owner_for(token),
        user=user,
        name=name,
        run=run,
        kind=kind,
        params=params,
    )
    try:
        # The INSERT commits only once Redis (or RabbitMQ) has the job: a web process dying in
        # between leaves no record whose message was never sent (the client, answered nothing,
        # sends it again and creates it then). Committed on its own first, such a record was
        # answered to that retry as an existing job and waited for jobs.lost_messages (5 minutes).
        with transaction.atomic():
            job.save(force_insert=True)
            # Refused by Redis or RabbitMQ: rolled back, and the client gets a 503 naming it
            # (web/errors.py) instead of a job that will never run.
            publisher.publish_job(job)
    except IntegrityError:
        # A concurrent request created this very run first: that one is the job.
        existing = Job.objects.get(owner=job.owner, name=name, run=run)
        return Submission(
            existing, job_store.current_meta(existing, job_store.read_meta(existing.id)), created=False
        )
    metrics.submitted(kind)
    # With LOG_FORMAT=json this line also carries the request's id, which the worker's lines for
    # the job repeat (config/logs.py): the two ends of a job can be found by either id.
    logger.info("Job %s submitted (%s)", job.id, kind, extra={"job_id": job.id, "kind": kind})
    return Submission(job, {"status": states.PENDING, "result": publisher.pending_result()}, created=True)


# Pools whose running job Celery can stop from outside: prefork (SIGTERM to the job's process)
# and gevent (the job's greenlet killed at its next wait). threads and solo cannot; there the
# job stops at its next progress report, when it sees the flag (JobTask._stop_if_cancelled).
TERMINATING_POOLS = ("prefork", "gevent")


def stop_delivery(job_id: str) -> None:
    """Flag the job cancelled (durable: every later start or progress report sees it) and ask
    the workers to drop it, terminating it where the configured pool can."""
    job_store.flag_revoked(job_id)
    terminate = settings.CELERY_WORKER_POOL in TERMINATING_POOLS
    current_app.control.revoke(job_id, terminate=terminate, **({"signal": "SIGTERM"} if terminate else {}))


def cancel(job: Job) -> dict | None:
    """Cancel: a queued job never runs, a running one is terminated. Returns the new meta."""
    meta = job_store.current_meta(job, job_store.read_meta(job.id))
    if presentation.is_finished(meta):
        return meta
    stop_delivery(job.id)
    if meta["status"] in (states.PENDING, states.RETRY):
        # Nobody runs it now: say so at once rather than when a worker dequeues it.
        job_store.write_meta(
            job.id, states.REVOKED, {"exc_type": "TaskRevokedError", "exc_message": ["cancelled"]}
        )
    Job.objects.filter(pk=job.pk).update(cancelled_at=timezone.now())
    return job_store.read_meta(job.id)
