"""What the jobs do, as Prometheus counters by kind (served by config/metrics.py).

Counted where it happens: submissions in web (jobs/job_actions.py), executions in the worker's pool
processes through Celery's task signals, redeliveries where a worker starts a job its Redis
delivery count says was started before under the same attempt (jobs/base.py). Only job kinds
(jobs/tasks.py) are counted, not the housekeeping tasks. Labels are kinds, outcomes and states:
never a job id, a user or anything a client sent.

- jobs_submitted_total: new runs accepted by the API (a resubmission answered with the live job
  is not one);
- jobs_started_total: executions started (a retry or a redelivery is another one);
- jobs_succeeded_total, jobs_failed_total: executions that ended so (a failure's retry counts in
  jobs_retried_total instead);
- jobs_retried_total: transient failures retried with backoff;
- jobs_redelivered_total: executions of a job whose worker died under it (killed, out of memory,
  a lost container) and that a worker started again;
- jobs_run_seconds: how long each execution ran, by kind and final state (success, failure,
  retry, ignored for a cancelled job).
"""

import time

from celery import signals
from prometheus_client import Counter, Histogram

SUBMITTED = Counter("jobs_submitted", "Jobs accepted by the API (new runs), by kind.", ["kind"])
STARTED = Counter("jobs_started", "Job executions started by a worker, by kind.", ["kind"])
SUCCEEDED = Counter("jobs_succeeded", "Job executions that succeeded, by kind.", ["kind"])
FAILED = Counter("jobs_failed", "Job executions that failed for good, by kind.", ["kind"])
RETRIED = Counter(
    "jobs_retried", "Job executions that failed transiently and were retried, by kind.", ["kind"]
)
REDELIVERED = Counter(
    "jobs_redelivered", "Job executions started again after their worker died under them, by kind.", ["kind"]
)
RUN_SECONDS = Histogram(
    "jobs_run_seconds",
    "Run time of job executions, by kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
COUNTERS = (SUBMITTED, STARTED, SUCCEEDED, FAILED, RETRIED, REDELIVERED)
WEB_COUNTERS = (SUBMITTED,)
WORKER_COUNTERS = (STARTED, SUCCEEDED, FAILED, RETRIED, REDELIVERED)

_started_at: dict[str, float] = {}  # task id -> monotonic start, in the process running it


def kind_of(task) -> str | None:
    """The job kind a Celery task runs, or None for a task that is no job kind."""
    from jobs.base import KINDS

    name = getattr(task, "name", None) or ""
    kind = name.removeprefix("jobs.")
    return kind if name.startswith("jobs.") and kind in KINDS else None


def initialise(counters=COUNTERS) -> None:
    """Create every kind's series of these counters at 0 in this process."""
    from jobs.base import KINDS

    for counter in counters:
        for kind in KINDS:
            counter.labels(kind)


def submitted(kind: str) -> None:
    SUBMITTED.labels(kind).inc()


def redelivered(task) -> None:
    kind = kind_of(task)
    if kind:
        REDELIVERED.labels(kind).inc()


@signals.task_prerun.connect
def _started(sender=None, task_id=None, **kwargs) -> None:
    kind = kind_of(sender)
    if kind:
        STARTED.labels(kind).inc()
        _started_at[task_id] = time.monotonic()


@signals.task_postrun.connect
def _ended(sender=None, task_id=None, state=None, **kwargs) -> None:
    started = _started_at.pop(task_id, None)
    kind = kind_of(sender)
    if kind and started is not None:
        RUN_SECONDS.labels(kind, (state or "unknown").lower()).observe(time.monotonic() - started)


@signals.task_success.connect
def _succeeded(sender=None, **kwargs) -> None:
    kind = kind_of(sender)
    if kind:
        SUCCEEDED.labels(kind).inc()


@signals.task_failure.connect
def _failed(sender=None, **kwargs) -> None:
    kind = kind_of(sender)
    if kind:
        FAILED.labels(kind).inc()


@signals.task_retry.connect
def _retried(sender=None, **kwargs) -> None:
    kind = kind_of(sender)
    if kind:
        RETRIED.labels(kind).inc()
