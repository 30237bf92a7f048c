"""The stack-wide job gauges, served by beat (one per stack) when METRICS_PORT is set.

What no single web or worker process knows, read from the broker and the job store at each
scrape (every 15 s by default; a scrape costs a few round trips, however long the queue):
- jobs_queue_messages{queue}: messages waiting in the jobs queue, not yet taken by a worker (a
  passive declare of the queue: LLEN on Redis, RabbitMQ's ready count);
- jobs_queue_oldest_age_seconds: how long ago the oldest job still waiting to start was
  submitted (state PENDING, or RETRY: waiting for a retry or to be run again after its worker
  died), among the OLDEST_SCANNED oldest unfinished jobs; 0 when none waits;
- jobs_workers_live: Celery workers that answer a ping within PING_TIMEOUT.
A gauge that cannot be read this time (its service is down) is left out of the scrape and the
reason logged; the others are served. Beat serves them because it runs once per stack and every
overlay configures it (docker-compose.rabbitmq.yml's broker included), and it still runs while
the workers, whose backlog these gauges show, are stopped.
"""

import logging
from datetime import timedelta

from celery import current_app, states
from django.conf import settings
from django.db import connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from jobs import job_store
from jobs.models import Job

logger = logging.getLogger(__name__)

OLDEST_SCANNED = 500  # unfinished jobs looked at for the oldest waiting one (oldest first)
PING_TIMEOUT = 1.0  # seconds a worker has to answer the ping
WAITING = (states.PENDING, states.RETRY)


def queue_messages(queue: str) -> int:
    """Messages waiting in the queue (a passive declare: it creates nothing)."""
    with current_app.connection_for_read() as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except connection.channel_errors:
            return 0  # no such queue yet (Redis has no key for an empty list): nothing waits


def oldest_waiting_age(now=None) -> float:
    """Seconds since the submission of the oldest job that waits to start, 0 if none does."""
    now = now or timezone.now()
    # The unfinished jobs' partial index, as the lost-job recovery reads it; older than the
    # result expiry a job's state is gone, and it waits for nothing any more.
    jobs = list(
        Job.objects.filter(
            finished_at=None,
            cancelled_at=None,
            submitted_at__gte=now - timedelta(seconds=settings.CELERY_RESULT_EXPIRES),
        )
        .only("id", "submitted_at")
        .order_by("submitted_at")[:OLDEST_SCANNED]
    )
    metas = job_store.read_many([job.id for job in jobs])
    for job, meta in zip(jobs, metas, strict=True):
        if meta is not None and meta.get("status") in WAITING:
            return max(0.0, (now - job.submitted_at).total_seconds())
    return 0.0


def live_workers() -> int:
    return len(current_app.control.ping(timeout=PING_TIMEOUT) or [])


class JobStoreCollector:
    """Reads the gauges at each scrape (a prometheus-client custom collector)."""

    def describe(self):
        # Nothing to read when it is registered: the first read is the first scrape's.
        return []

    def collect(self):
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        gauges = (
            (
                "jobs_queue_messages",
                "Jobs waiting in the broker's queue for a worker.",
                lambda: queue_messages(queue),
                {"queue": queue},
            ),
            (
                "jobs_queue_oldest_age_seconds",
                "Seconds since the oldest job still waiting to start was submitted (0: none waits).",
                oldest_waiting_age,
                {},
            ),
            ("jobs_workers_live", "Celery workers answering a ping.", live_workers, {}),
        )
        try:
            for name, documentation, read, labels in gauges:
                try:
                    value = read()
                except Exception as exc:  # noqa: BLE001 - a service is down: leave this gauge out
                    logger.warning("%s not read: %s: %s", name, type(exc).__name__, exc)
                    continue
                family = GaugeMetricFamily(name, documentation, labels=list(labels))
                family.add_metric(list(labels.values()), value)
                yield family
        finally:
            # Each scrape is served by a thread of its own: its database connection goes with it.
            connection.close()
