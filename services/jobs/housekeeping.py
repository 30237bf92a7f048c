"""Periodic housekeeping tasks (run by beat: CELERY_BEAT_SCHEDULE in config/settings.py).

Not job kinds: clients cannot submit them. Workers load this module through CELERY_IMPORTS.
"""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from jobs import recovery
from jobs.models import Job


@shared_task(name="jobs.purge_old_job_records")
def purge_old_job_records() -> int:
    """Delete job records older than JOB_RECORD_RETENTION_DAYS (their results expired long ago)."""
    cutoff = timezone.now() - timedelta(days=settings.JOB_RECORD_RETENTION_DAYS)
    deleted, _ = Job.objects.filter(submitted_at__lt=cutoff).delete()
    return deleted


@shared_task(name="jobs.recover_lost_jobs")
def recover_lost_jobs() -> int:
    """Publish again the jobs whose message a Redis crash lost (jobs/recovery.py). Only on the
    Redis broker: RabbitMQ confirms each publish only once its quorum queue holds the message
    durably, and its queues cannot be read without taking the messages."""
    if settings.BROKER != "redis":
        return 0
    return len(recovery.recover_lost_jobs())
