"""What every job kind is built on: the task base class, its errors, and the kind registry.

The kinds themselves (the examples, and yours) live in jobs/tasks.py; this module is the
machinery they share, so it needs no edit to add a kind.
"""

import socket
import time
from dataclasses import dataclass

from celery import Task, shared_task, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.utils.log import get_task_logger
from celery.worker.request import Request
from django.conf import settings
from django.utils import timezone

from jobs import job_start, job_store, metrics

logger = get_task_logger(__name__)
HOSTNAME = socket.gethostname()
# Pools whose time limits Celery does not enforce (no signal can stop a thread, and the solo pool
# runs the job in the worker process itself): there a job is held to them at its progress reports.
POOLS_WITHOUT_TIME_LIMITS = ("threads", "solo")


class JobError(Exception):
    """A permanent failure whose message is safe to show the client as is."""


class TransientJobError(Exception):
    """A failure worth retrying (a busy or briefly unreachable service): retried with backoff."""


def too_many_deliveries_message(deliveries: int) -> str:
    return (
        f"The job was started {deliveries} times and each time its worker died before it "
        "finished (killed, or out of memory); it is not started again."
    )


class JobRequest(Request):
    """A job's request in the worker's main process.

    When a prefork pool process dies under a job (OOM killer, segfault), Celery hands the message
    back to the queue (task_reject_on_worker_lost) without writing any state, so the job would
    go on showing its last PROGRESS. Say instead that it waits to run again."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        if isinstance(exc_info.exception, WorkerLostError) and self.task.reject_on_worker_lost:
            job_store.mark_worker_lost(self.id)


class JobTask(Task):
    """Reports STARTED/PROGRESS with timestamps, the worker and the delivery count; honours
    cancellation; gives up on a job whose worker keeps dying under it."""

    Request = JobRequest
    autoretry_for = (TransientJobError,)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 5

    def before_start(self, task_id, args, kwargs):
        # Counted per attempt: a retry (TransientJobError) is a new attempt, not a redelivery.
        # The cancellation flag is read and STARTED written in the same script (one round trip
        # to Redis); STARTED is not written for a cancelled job nor for one over its deliveries.
        self.request.started_at = timezone.now().isoformat()
        self.request.started_clock = time.monotonic()

        def started_meta(deliveries):
            meta = self.backend._get_result_meta(
                result={**self._running_meta(), "deliveries": deliveries},
                state=states.STARTED,
                traceback=None,
                request=self.request,
            )
            meta["task_id"] = task_id
            return self.backend.encode(meta)

        total, this_attempt, cancelled = job_start.start_delivery(
            task_id, self.request.retries, started_meta, settings.JOB_MAX_DELIVERIES
        )
        if cancelled:
            self._stop_cancelled()
        self.request.deliveries = total
        # One line per execution: a job delivered again after a worker died shows up twice.
        logger.info(
            "Job %s started (%s, attempt %d, delivery %d)",
            task_id,
            self.name,
            self.request.retries + 1,
            total,
        )
        if this_attempt > 1:
            metrics.redelivered(self)
        if this_attempt > settings.JOB_MAX_DELIVERIES:
            # Its worker died under it every time (a job that exhausts memory kills its worker
            # again on each delivery): end it instead of crashing workers forever.
            logger.error("Job %s delivered %d times without finishing; failing it", task_id, this_attempt)
            raise JobError(too_many_deliveries_message(this_attempt - 1))

    def progress(self, current: int, total: int, message: str = "") -> None:
        """Report progress; ends the job here if it was cancelled meanwhile, or (threads and solo
        pools) if it ran past its time limits."""
        self._stop_if_cancelled()
        self._hold_to_time_limits()
        self.update_state(
            state=job_store.PROGRESS,
            meta={**self._running_meta(), "current": current, "total": total, "message": message},
        )

    def __call__(self, *args, **kwargs):
        output = super().__call__(*args, **kwargs)
        return {**self._running_meta(), "output": output}

    def _running_meta(self) -> dict:
        return {
            "hostname": HOSTNAME,
            "started_at": getattr(self.request, "started_at", None),
            "deliveries": getattr(self.request, "deliveries", None),
        }

    def _stop_if_cancelled(self) -> None:
        # Celery's revoke list is per worker and in memory; the flag in Redis is durable.
        try:
            cancelled = job_store.is_revoked(self.request.id)
        except job_store.REDIS_UNAVAILABLE as exc:
            # Redis is restarting. The check is advisory, so the job goes on: the state write
            # that follows waits for Redis (result_backend_always_retry) and the next check
            # sees the flag. Raising here would end as FAILURE a job nobody cancelled.
            logger.warning(
                "Job %s: cancellation flag unreadable (%s); going on", self.request.id, type(exc).__name__
            )
            return
        if cancelled:
            self._stop_cancelled()

    def _hold_to_time_limits(self) -> None:
        """What Celery's prefork and gevent pools do to a job past its limits, done here for the
        pools that cannot: the soft limit raises SoftTimeLimitExceeded once (the job may catch
        it to clean up), the hard one TimeLimitExceeded. Without it a job could outlast the
        visibility timeout, which settings keep above the hard limit, and be delivered twice."""
        if settings.CELERY_WORKER_POOL not in POOLS_WITHOUT_TIME_LIMITS:
            return
        hard, soft = self.request.timelimit or (None, None)
        hard = hard or self.time_limit or settings.CELERY_TASK_TIME_LIMIT
        soft = soft or self.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
        elapsed = time.monotonic() - getattr(self.request, "started_clock", time.monotonic())
        if hard and elapsed >= hard:
            raise TimeLimitExceeded(hard)
        if soft and elapsed >= soft and not getattr(self.request, "soft_limit_raised", False):
            self.request.soft_limit_raised = True
            raise SoftTimeLimitExceeded()

    def _stop_cancelled(self) -> None:
        logger.info("Job %s was cancelled; not running it further", self.request.id)
        self.backend.mark_as_revoked(self.request.id, reason="cancelled", request=self.request)
        raise Ignore()


@dataclass(frozen=True)
class JobKind:
    name: str
    task: JobTask
    params: type  # the kind's params serializer (rest_framework): what the API accepts
    description: str
    # An example shipped with the stack (jobs/tasks.py): on in development, off in production
    # unless named in JOB_DEMO_KINDS (some hold a worker for minutes or exhaust its memory).
    demo: bool = False


# Kind name -> kind; filled as jobs/tasks.py is imported (jobs.apps imports it at start-up).
KINDS: dict[str, JobKind] = {}


def job_kind(params: type, *, demo: bool = False):
    """Register a function as the job kind of the same name (task "jobs.<name>")."""

    def register(fn):
        task = shared_task(
            bind=True,
            base=JobTask,
            name=f"jobs.{fn.__name__}",
            rate_limit=settings.JOB_RATE_LIMITS.get(fn.__name__),
        )(fn)
        KINDS[fn.__name__] = JobKind(fn.__name__, task, params, (fn.__doc__ or "").strip(), demo)
        return task

    return register


def kind_enabled(kind: JobKind) -> bool:
    """Whether clients may submit the kind: any kind of yours; a demo kind only where
    JOB_DEMO_KINDS names it ("*" for all, the development default)."""
    enabled = settings.JOB_DEMO_KINDS
    return not kind.demo or "*" in enabled or kind.name in enabled
