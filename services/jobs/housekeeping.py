"""Periodic housekeeping tasks (run by beat: CELERY_BEAT_SCHEDULE in config/settings/celery_jobs.py).

Not job kinds: clients cannot submit them. Workers load this module through CELERY_IMPORTS.
"""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from jobs import lost_messages
from jobs.models import Job

# Records deleted per statement, and statements per run: each DELETE is short (its locks and
# its WAL are bounded), and a run that finds more than PURGE_BATCHES * PURGE_BATCH old records
# leaves the rest to the next run, an hour later.
PURGE_BATCH = 5000
PURGE_BATCHES = 20


@shared_task(name="jobs.purge_old_job_records")
def purge_old_job_records() -> int:
    """Delete job records older than JOB_RECORD_RETENTION_DAYS (their results expired long ago),
    PURGE_BATCH at a time."""
    cutoff = timezone.now() - timedelta(days=settings.JOB_RECORD_RETENTION_DAYS)
    deleted = 0
    for _ in range(PURGE_BATCHES):
        batch = list(
            Job.objects.filter(submitted_at__lt=cutoff)
            .order_by("submitted_at")
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not batch:
            break
        count, _ = Job.objects.filter(pk__in=batch).delete()
        deleted += count
    return deleted


@shared_task(name="jobs.recover_lost_jobs")
def recover_lost_jobs() -> int:
    """Publish again the jobs whose message a Redis crash lost (jobs/lost_messages.py). Only on the
    Redis broker: RabbitMQ confirms each publish only once its quorum queue holds the message
    durably, and its queues cannot be read without taking the messages."""
    if settings.BROKER != "redis":
        return 0
    return len(lost_messages.recover_lost_jobs())
