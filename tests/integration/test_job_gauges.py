"""integration: the stack-wide job gauges beat serves to Prometheus (services/jobs/gauges.py), read
from the real Redis 5.0 broker and result backend, PostgreSQL and worker."""

import threading
import uuid
from datetime import timedelta

import pytest
from celery import current_app, states
from django.utils import timezone

from jobs import gauges, job_actions, job_store
from jobs.models import Job

pytestmark = pytest.mark.django_db


def record(caller, *, submitted_at, state: str | None) -> Job:
    """A job record of caller's submitted then, with that state in the result backend (no message)."""
    name = f"gauge-{uuid.uuid4().hex[:8]}"
    job = Job.objects.create(
        id=job_actions.job_id_for(caller.token, name),
        owner=job_actions.owner_for(caller.token),
        user=caller.user,
        name=name,
        kind="noop",
        params={},
        submitted_at=submitted_at,
    )
    if state is not None:
        job_store.write_meta(job.id, state, {"hostname": None, "started_at": None})
    return job


def test_the_oldest_job_waiting_to_start_is_the_oldest_pending_or_retrying_one(alice):
    # A moment of its own, days ahead: no other test's job falls in the window the gauge reads.
    now = timezone.now() + timedelta(days=10)
    assert gauges.oldest_waiting_age(now) == 0.0
    record(alice, submitted_at=now - timedelta(minutes=40), state=states.STARTED)  # running
    record(alice, submitted_at=now - timedelta(minutes=30), state=states.SUCCESS)  # not archived yet
    record(alice, submitted_at=now - timedelta(minutes=25), state=None)  # state expired
    record(alice, submitted_at=now - timedelta(minutes=20), state=states.RETRY)  # worker lost
    record(alice, submitted_at=now - timedelta(minutes=10), state=states.PENDING)
    record(alice, submitted_at=now - timedelta(days=2), state=states.PENDING)  # older than the results
    assert gauges.oldest_waiting_age(now) == pytest.approx(20 * 60)


def test_queue_depth_counts_the_messages_no_worker_took(worker):
    queue = f"gauge-{uuid.uuid4().hex[:8]}"  # a queue no worker consumes
    assert gauges.queue_messages(queue) == 0
    for _ in range(3):
        current_app.send_task("jobs.noop", queue=queue)
    try:
        assert gauges.queue_messages(queue) == 3
    finally:
        with current_app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)


def test_live_workers_answer_a_ping_and_every_gauge_is_served(worker):
    assert gauges.live_workers() >= 1
    # As beat's metrics server does: a scrape in a thread of its own (with its own connection).
    scraped = []
    thread = threading.Thread(target=lambda: scraped.extend(gauges.JobStoreCollector().collect()))
    thread.start()
    thread.join(timeout=30)
    families = {family.name: family for family in scraped}
    assert set(families) == {"jobs_queue_messages", "jobs_queue_oldest_age_seconds", "jobs_workers_live"}
    assert families["jobs_queue_messages"].samples[0].labels == {"queue": "jobs"}
    assert families["jobs_workers_live"].samples[0].value >= 1
