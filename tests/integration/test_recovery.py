"""integration: jobs whose message a Redis crash lost are published again and run, on the real
Redis 5.0, PostgreSQL and worker; jobs that are fine are left alone.

The crash itself is not staged here: its outcome is - a committed Job record with no message in
Redis and no state (or a PENDING state) - made by writing the record directly and nothing else.
"""

import uuid
from datetime import timedelta

import pytest
from celery import current_app, states
from django.conf import settings
from django.utils import timezone

from jobs import job_actions, job_store, lost_messages
from jobs.models import Job

pytestmark = pytest.mark.django_db


def stranded(caller, *, age: timedelta, state: str | None, cancelled: bool = False) -> Job:
    """A job record of caller's, submitted `age` ago, with no message in the broker."""
    name = f"stranded-{uuid.uuid4().hex[:8]}"
    job = Job.objects.create(
        id=job_actions.job_id_for(caller.token, name),
        owner=job_actions.owner_for(caller.token),
        user=caller.user,
        name=name,
        kind="sum_number",
        params={"x": 1, "y": 10},
        submitted_at=timezone.now() - age,
        cancelled_at=timezone.now() if cancelled else None,
    )
    if state is not None:
        job_store.write_meta(job.id, state, {"hostname": None, "started_at": None})
    return job


def test_every_beat_entry_names_a_task_the_worker_runs(worker):
    # Asked of the real worker: what it registered is what it can run when beat sends it.
    replies = current_app.control.inspect(timeout=5).registered() or {}
    registered = {name for names in replies.values() for name in names}
    assert registered, "the worker did not answer"
    for entry, spec in settings.CELERY_BEAT_SCHEDULE.items():
        assert spec["task"] in registered, (entry, spec["task"])


@pytest.mark.parametrize("state", [None, states.PENDING], ids=["no-state", "pending"])
def test_a_stranded_job_is_published_again_and_runs_once(alice, state):
    job = stranded(alice, age=timedelta(hours=1), state=state)

    assert lost_messages.recover_lost_jobs(settle=0.2) == [job.id]

    body = alice.wait_for_state(job.id, "SUCCESS")
    assert body["result"] == {"sum": 55, "count": 10}
    # Once it ran, nothing about it looks lost any more.
    assert lost_messages.recover_lost_jobs(settle=0.2) == []


def test_jobs_that_are_fine_are_left_alone(alice):
    fresh = stranded(alice, age=timedelta(seconds=30), state=states.PENDING)
    finished = stranded(alice, age=timedelta(hours=1), state=states.SUCCESS)
    cancelled = stranded(alice, age=timedelta(hours=1), state=states.PENDING, cancelled=True)
    expired = stranded(alice, age=timedelta(seconds=settings.CELERY_RESULT_EXPIRES + 60), state=None)

    assert lost_messages.recover_lost_jobs(settle=0.2) == []
    for job in (fresh, cancelled):
        assert job_store.read_meta(job.id)["status"] == states.PENDING
    assert job_store.read_meta(finished.id)["status"] == states.SUCCESS
    assert job_store.read_meta(expired.id) is None


def test_a_job_whose_message_a_worker_holds_is_not_published_twice(alice):
    # A message with a countdown is taken by the worker and held unacknowledged until then,
    # its state PENDING all along: the recovery must find it among the unacknowledged messages.
    from jobs.base import KINDS

    job = stranded(alice, age=timedelta(hours=1), state=states.PENDING)
    KINDS["sum_number"].task.apply_async(kwargs=job.params, task_id=job.id, countdown=4)

    assert lost_messages.recover_lost_jobs(settle=0.5) == []
    assert job_store.read_meta(job.id)["status"] == states.PENDING
    assert alice.wait_for_state(job.id, "SUCCESS")["result"] == {"sum": 55, "count": 10}


def test_one_pass_at_a_time(alice):
    # A pass holding the lock (here: this test) makes an overlapping one do nothing.
    job = stranded(alice, age=timedelta(hours=1), state=None)
    client = job_store.backend_client()
    client.set(lost_messages.LOCK_KEY, b"another-pass", ex=60)
    try:
        assert lost_messages.recover_lost_jobs(settle=0.2) == []
        assert job_store.read_meta(job.id) is None
    finally:
        client.delete(lost_messages.LOCK_KEY)
    assert lost_messages.recover_lost_jobs(settle=0.2) == [job.id]
    assert alice.wait_for_state(job.id, "SUCCESS")["result"] == {"sum": 55, "count": 10}
