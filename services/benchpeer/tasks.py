"""The peer's task: a plain @shared_task, as the guides write it (found by autodiscover_tasks)."""

from celery import shared_task


@shared_task(name="benchpeer.noop")
def noop():
    return None
