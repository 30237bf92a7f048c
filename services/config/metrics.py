"""Serving the app's Prometheus metrics (docker-compose.monitoring.yml scrapes them).

Off unless METRICS_PORT is set. Then one process per container serves, on that port of the
compose network (never published), what the container's processes counted:
- web: gunicorn's master (config/gunicorn.py), for its worker processes: django-prometheus's
  requests, latency and answers by view (route), method and status, and jobs submitted;
- worker: the worker's main process, for its pool processes: jobs started, succeeded, failed,
  retried and redelivered, and their run time (jobs/metrics.py);
- beat (one per stack): the stack-wide gauges of jobs/gauges.py - queue depth, the oldest job
  waiting to start, live workers.
Gunicorn workers and prefork pool processes are separate processes, so they count in
prometheus-client's multiprocess mode: each writes its values to files in PROMETHEUS_MULTIPROC_DIR
(a directory of the container's /tmp, made by the start script), which the serving process adds up
at each scrape; a process that is replaced keeps its counts. Without that variable (one process:
the threads, gevent and solo pools, beat) the process serves its own values.
"""

import os

from celery import signals
from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server


def registry() -> CollectorRegistry:
    """What this container's processes counted: all of them (multiprocess mode), or this one."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined


def serve_job_counts(counters) -> bool:
    """web and worker: serve the counts of this container's processes on METRICS_PORT (from a
    thread of this process), if the port is set; `counters` are the job counters it keeps."""
    if not settings.METRICS_PORT:
        return False
    from jobs import metrics as job_metrics

    # Every kind's series exist from the start (at 0): a rate or a ratio has data before the
    # first job of a kind fails, and an alert can tell "none failed" from "not counted".
    job_metrics.initialise(counters)
    start_http_server(settings.METRICS_PORT, registry=registry())
    return True


def process_exited(pid: int) -> None:
    """A process that counted is gone (a recycled gunicorn worker): its live gauges go too."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


@signals.worker_ready.connect
def _serve_worker_metrics(sender, **kwargs) -> None:
    # The worker's main process, once its pool runs; pool processes only write their files.
    from jobs.metrics import WORKER_COUNTERS

    serve_job_counts(WORKER_COUNTERS)


@signals.beat_init.connect
def _serve_stack_gauges(sender, **kwargs) -> None:
    if not settings.METRICS_PORT:
        return
    from jobs.gauges import JobStoreCollector

    REGISTRY.register(JobStoreCollector())
    start_http_server(settings.METRICS_PORT)
