"""Job kinds and the task base class that reports their state.

Every kind is a Celery task named "jobs.<kind>" taking its validated params as keyword
arguments. To add one: write a params serializer and a function, decorate it with @job_kind.

Tasks may run more than once (at-least-once delivery: a worker killed mid-job means the job
runs again elsewhere). Each kind below is a pure computation of its params, so a second run
writes the same result; a kind with side effects must make them idempotent (keyed by
self.request.id) - see docs/reliability.md.
"""

import hashlib
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from celery import Task, shared_task, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import serializers

from jobs import store

logger = get_task_logger(__name__)
HOSTNAME = socket.gethostname()
PROGRESS = "PROGRESS"


class JobError(Exception):
    """A permanent failure whose message is safe to show the client as is."""


class TransientJobError(Exception):
    """A failure worth retrying (a busy or briefly unreachable service): retried with backoff."""


class JobTask(Task):
    """Reports STARTED/PROGRESS with timestamps and the worker's hostname; honours cancellation."""

    autoretry_for = (TransientJobError,)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 5

    def before_start(self, task_id, args, kwargs):
        self._stop_if_cancelled()
        self.request.started_at = timezone.now().isoformat()
        # One line per execution: a job delivered again after a worker died shows up twice.
        logger.info("Job %s started (%s, attempt %d)", task_id, self.name, self.request.retries + 1)
        self.update_state(state=states.STARTED, meta=self._running_meta())

    def progress(self, current: int, total: int, message: str = "") -> None:
        """Report progress; ends the job here if it was cancelled meanwhile."""
        self._stop_if_cancelled()
        self.update_state(
            state=PROGRESS,
            meta={**self._running_meta(), "current": current, "total": total, "message": message},
        )

    def __call__(self, *args, **kwargs):
        output = super().__call__(*args, **kwargs)
        return {**self._running_meta(), "output": output}

    def _running_meta(self) -> dict:
        return {"hostname": HOSTNAME, "started_at": getattr(self.request, "started_at", None)}

    def _stop_if_cancelled(self) -> None:
        # Celery's revoke list is per worker and in memory; the flag in Redis is durable.
        try:
            cancelled = store.is_revoked(self.request.id)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis is restarting. The check is advisory, so the job goes on: the state write
            # that follows waits for Redis (result_backend_always_retry) and the next check
            # sees the flag. Raising here would end a job nobody cancelled as FAILURE - lost
            # (seen in the chaos suite: every running job failed on `docker compose restart redis`).
            logger.warning("Job %s: cancellation flag unreadable (%s); going on",
                           self.request.id, type(exc).__name__)
            return
        if cancelled:
            logger.info("Job %s was cancelled; not running it further", self.request.id)
            self.backend.mark_as_revoked(self.request.id, reason="cancelled", request=self.request)
            raise Ignore()


@dataclass(frozen=True)
class JobKind:
    name: str
    task: JobTask
    params: type[serializers.Serializer]
    description: str


KINDS: dict[str, JobKind] = {}


def job_kind(params: type[serializers.Serializer]):
    """Register a function as the job kind of the same name (task "jobs.<name>")."""

    def register(fn):
        task = shared_task(
            bind=True, base=JobTask, name=f"jobs.{fn.__name__}",
            rate_limit=settings.JOB_RATE_LIMITS.get(fn.__name__),
        )(fn)
        KINDS[fn.__name__] = JobKind(fn.__name__, task, params, (fn.__doc__ or "").strip())
        return task

    return register


# --- kinds -----------------------------------------------------------------------------------

class SumNumberParams(serializers.Serializer):
    x = serializers.IntegerField(min_value=-(10**12), max_value=10**12)
    y = serializers.IntegerField(min_value=-(10**12), max_value=10**12)

    MAX_COUNT = 10**8

    def validate(self, attrs):
        count = attrs["y"] - attrs["x"] + 1
        if not 1 <= count <= self.MAX_COUNT:
            raise serializers.ValidationError(
                {"y": f"y must be >= x and y - x < {self.MAX_COUNT}."}
            )
        return attrs


@job_kind(SumNumberParams)
def sum_number(self, x: int, y: int) -> dict:
    """CPU-bound: adds up every integer from x to y, reporting progress per tenth."""
    count = y - x + 1
    chunk = max(1, -(-count // 10))
    total = 0
    for done, start in enumerate(range(x, y + 1, chunk), start=1):
        total += sum(range(start, min(start + chunk, y + 1)))
        self.progress(min(done * chunk, count), count, f"added {min(done * chunk, count)} numbers")
    return {"sum": total, "count": count}


class ModelInferenceParams(serializers.Serializer):
    text = serializers.CharField(max_length=2000)
    steps = serializers.IntegerField(min_value=1, max_value=100, default=5)
    step_seconds = serializers.FloatField(min_value=0, max_value=60, default=1.0)


INFERENCE_LABELS = ("negative", "neutral", "positive")


@job_kind(ModelInferenceParams)
def model_inference(self, text: str, steps: int = 5, step_seconds: float = 1.0) -> dict:
    """Long and multi-step: a stand-in model run that reports progress after every step."""
    digest = hashlib.sha256(text.encode()).digest()
    for step in range(1, steps + 1):
        time.sleep(step_seconds)
        self.progress(step, steps, f"step {step} of {steps}")
    return {
        "label": INFERENCE_LABELS[digest[0] % len(INFERENCE_LABELS)],
        "score": round(digest[1] / 255, 3),
        "steps": steps,
    }


class FailParams(serializers.Serializer):
    message = serializers.CharField(max_length=200, default="This job fails on purpose.")


@job_kind(FailParams)
def fail(self, message: str = "This job fails on purpose.") -> dict:
    """Always fails with the given message: shows how errors reach the client."""
    raise JobError(message)


class FlakyParams(serializers.Serializer):
    failures = serializers.IntegerField(min_value=0, max_value=JobTask.max_retries, default=2)


@job_kind(FlakyParams)
def flaky(self, failures: int = 2) -> dict:
    """Fails transiently `failures` times, then succeeds: shows retries with backoff."""
    attempt = self.request.retries + 1
    if attempt <= failures:
        raise TransientJobError(f"transient failure on attempt {attempt}")
    return {"attempts": attempt}


class NoParams(serializers.Serializer):
    pass


@job_kind(NoParams)
def noop(self) -> dict:
    """Does nothing: measures the stack's own overhead (scripts/bench)."""
    return {}


# --- housekeeping (periodic, not a job kind) --------------------------------------------------

@shared_task(name="jobs.purge_old_job_records")
def purge_old_job_records() -> int:
    """Delete job records older than JOB_RECORD_RETENTION_DAYS (their results expired long ago)."""
    from jobs.models import Job

    cutoff = timezone.now() - timedelta(days=settings.JOB_RECORD_RETENTION_DAYS)
    deleted, _ = Job.objects.filter(submitted_at__lt=cutoff).delete()
    return deleted


@shared_task(name="jobs.recover_lost_jobs")
def recover_lost_jobs() -> int:
    """Publish again the jobs whose message a Redis crash lost (jobs/recovery.py)."""
    from jobs import recovery

    return len(recovery.recover_lost_jobs())


__all__ = ["KINDS", "JobError", "JobTask", "SoftTimeLimitExceeded", "TransientJobError"]
