"""The job kinds: the file to edit to add one.

Every kind is a Celery task named "jobs.<kind>" taking its validated params as keyword
arguments. To add one: write a params serializer (what the API accepts) and a function taking
`self` (the running task: self.progress(current, total, message) reports progress) and those
params, decorated with @job_kind(YourParams). It is then offered by POST /api/jobs/ at once.
The kinds below are examples (demo=True): in production they are refused unless named in
JOB_DEMO_KINDS, since some hold a worker for minutes (wait_io, model_inference) or exhaust its
memory on purpose (allocate).
Raise JobError("...") for a failure whose message the client may read, TransientJobError for
one worth retrying with backoff; anything else shows as an internal error.

Tasks may run more than once (at-least-once delivery: a worker killed mid-job means the job
runs again elsewhere). Each kind below is a pure computation of its params, so a second run
writes the same result; a kind with side effects must make them idempotent (keyed by
self.request.id) - see docs/reliability.md. The machinery (JobTask, the registry) is in
jobs/base.py; periodic housekeeping tasks are in jobs/housekeeping.py.
"""

import hashlib
import time

from rest_framework import serializers

from jobs.base import JobError, JobTask, TransientJobError, job_kind


class SumNumberParams(serializers.Serializer):
    x = serializers.IntegerField(min_value=-(10**12), max_value=10**12)
    y = serializers.IntegerField(min_value=-(10**12), max_value=10**12)

    MAX_COUNT = 10**8

    def validate(self, attrs):
        count = attrs["y"] - attrs["x"] + 1
        if not 1 <= count <= self.MAX_COUNT:
            raise serializers.ValidationError({"y": f"y must be >= x and y - x < {self.MAX_COUNT}."})
        return attrs


@job_kind(SumNumberParams, demo=True)
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


@job_kind(ModelInferenceParams, demo=True)
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


@job_kind(FailParams, demo=True)
def fail(self, message: str = "This job fails on purpose.") -> dict:
    """Always fails with the given message: shows how errors reach the client."""
    raise JobError(message)


class FlakyParams(serializers.Serializer):
    failures = serializers.IntegerField(min_value=0, max_value=JobTask.max_retries, default=2)


@job_kind(FlakyParams, demo=True)
def flaky(self, failures: int = 2) -> dict:
    """Fails transiently `failures` times, then succeeds: shows retries with backoff."""
    attempt = self.request.retries + 1
    if attempt <= failures:
        raise TransientJobError(f"transient failure on attempt {attempt}")
    return {"attempts": attempt}


class NoParams(serializers.Serializer):
    pass


@job_kind(NoParams, demo=True)
def noop(self) -> dict:
    """Does nothing: measures the stack's own overhead (scripts/bench)."""
    return {}


class WaitIoParams(serializers.Serializer):
    seconds = serializers.FloatField(min_value=0, max_value=600, default=2.0)
    steps = serializers.IntegerField(min_value=1, max_value=600, default=1)


@job_kind(WaitIoParams, demo=True)
def wait_io(self, seconds: float = 2.0, steps: int = 1) -> dict:
    """I/O-bound: waits `seconds` in `steps` (as a job waiting on a remote call would), using no
    CPU; progress after each step. A gevent or threads worker runs many at once, where prefork
    runs one per process (CELERY_WORKER_POOL, docs/benchmarks.md)."""
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)  # gevent's patched sleep hands the CPU to other jobs
        self.progress(step, steps, f"waited {step} of {steps}")
    return {"seconds": seconds, "steps": steps}


class AllocateParams(serializers.Serializer):
    megabytes = serializers.IntegerField(min_value=1, max_value=4096)
    seconds = serializers.FloatField(min_value=0, max_value=60, default=1.0)


@job_kind(AllocateParams, demo=True)
def allocate(self, megabytes: int, seconds: float = 1.0) -> dict:
    """Holds `megabytes` MiB of memory for `seconds`: shows what happens to a job that needs
    more memory than its worker may use (the kernel kills the process; docs/reliability.md)."""
    chunks = []
    for done in range(1, megabytes + 1):
        chunks.append(bytearray(1024 * 1024))  # zero-filled: really resident, not just reserved
        if done % 64 == 0 or done == megabytes:
            self.progress(done, megabytes, f"holding {done} MiB")
    time.sleep(seconds)
    return {"megabytes": len(chunks)}
