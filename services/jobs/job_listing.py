"""The pages' list of a user's jobs: filters by state from the records alone, and keyset pages
that hold with thousands of jobs."""

from datetime import UTC, datetime, timedelta

from celery import states
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs import ids, presentation
from jobs.models import Job

PAGE_SIZE = 25
STATE_FILTERS = {
    "active": "queued or running",
    states.SUCCESS: "SUCCESS",
    states.FAILURE: "FAILURE",
    states.REVOKED: "REVOKED (cancelled)",
    presentation.EXPIRED: "EXPIRED",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_of(job: Job) -> str:
    """Where a page of the list starts or ends: the job's submission time (whole microseconds)
    and id, the list's order."""
    return f"{(job.submitted_at - EPOCH) // timedelta(microseconds=1)}.{job.id}"


def parse_cursor(value: str | None) -> tuple[datetime, str] | None:
    micros, _, job_id = (value or "").partition(".")
    if not (micros.isdigit() and ids.is_job_id(job_id)):
        return None
    return EPOCH + timedelta(microseconds=int(micros)), job_id


def state_filter(state: str) -> Q:
    """Jobs whose state is `state` (or "active": queued or running), from their records alone.
    A job's final state reaches its record about a second after it finished (jobs/archive.py):
    in that second it is listed as active, showing its real state."""
    expired_before = timezone.now() - timedelta(seconds=settings.CELERY_RESULT_EXPIRES)
    if state == "active":
        return Q(finished_at__isnull=True, cancelled_at__isnull=True)
    if state == presentation.EXPIRED:
        return Q(finished_at__lte=expired_before)
    live = Q(outcome__status=state, finished_at__gt=expired_before)
    if state == states.REVOKED:  # cancelled, and the worker has not said so yet
        live |= Q(finished_at__isnull=True, cancelled_at__isnull=False)
    return live


def keyset_page(
    jobs, older: tuple[datetime, str] | None, newer: tuple[datetime, str] | None, size: int = PAGE_SIZE
) -> tuple[list[Job], bool, bool]:
    """(a page of jobs newest first, whether older ones exist, whether newer ones exist).

    Keyset pagination on (submitted_at, id): each page is one index range scan of
    (user, -submitted_at) from the cursor, however deep it is, and a job submitted meanwhile
    neither shifts nor repeats the rows of the pages after it (offsets would do both). The
    redundant `submitted_at <=` bound is what lets PostgreSQL start the scan at the cursor."""
    if newer is not None:
        at, job_id = newer
        rows = list(
            jobs.filter(submitted_at__gte=at)
            .filter(Q(submitted_at__gt=at) | Q(id__gt=job_id))
            .order_by("submitted_at", "id")[: size + 1]
        )
        return rows[:size][::-1], True, len(rows) > size
    if older is not None:
        at, job_id = older
        jobs = jobs.filter(submitted_at__lte=at).filter(Q(submitted_at__lt=at) | Q(id__lt=job_id))
    rows = list(jobs.order_by("-submitted_at", "-id")[: size + 1])
    return rows[:size], len(rows) > size, older is not None
