"""The parts of scripts/bench's broker and pool rows (7, 8) that run inside the web container.

scripts/bench pipes this file into `docker compose exec -T web python - COMMAND [ARGS]`; it
prints one JSON object on its last line. Commands (Redis broker):
  run QUEUE KIND N PARAMS WARM SECONDS
                                WARM no-op jobs to QUEUE (the pool worker's own queue, so the
                                stack's worker never takes them), waited for; then N jobs of
                                KIND with PARAMS (JSON) at once, each with its PENDING record as
                                a submission writes it; waits (up to SECONDS) until all N are
                                SUCCESS in the result backend, read with MGET
  cleanup QUEUE...              delete the queues' kombu binding keys (the queues are empty)
"""

import json
import sys
import time
import uuid

import django

django.setup()

from celery import current_app  # noqa: E402
from django.conf import settings  # noqa: E402


def _broker():
    import redis

    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def _send_and_wait(queue: str, kind: str, n: int, params: dict, timeout: float) -> float:
    from jobs import job_store
    from jobs.base import KINDS

    backend = current_app.backend
    client = backend.client
    task = KINDS[kind].task
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for job_id in ids:  # the PENDING records first: only the sends are in the timed part
        job_store.write_meta(job_id, "PENDING", {"hostname": None, "started_at": None})
    pending = [backend.get_key_for_task(job_id) for job_id in ids]
    start = time.perf_counter()
    for job_id in ids:
        task.apply_async(kwargs=params, task_id=job_id, queue=queue)
    while pending:
        statuses = [backend.decode(value)["status"] if value else None for value in client.mget(pending)]
        ended = [status for status in statuses if status in ("FAILURE", "REVOKED")]
        if ended:
            raise SystemExit(json.dumps({"error": f"a {kind} job ended {ended[0]}"}))
        pending = [key for key, status in zip(pending, statuses) if status != "SUCCESS"]
        if pending:
            if time.perf_counter() - start > timeout:
                raise SystemExit(
                    json.dumps(
                        {
                            "error": f"{len(pending)} of {n} {kind} jobs on {queue} "
                            f"not SUCCESS within {timeout:g} s"
                        }
                    )
                )
            time.sleep(0.01)
    return time.perf_counter() - start


def run(queue: str, kind: str, n: int, params: dict, warm: int, timeout: float) -> dict:
    import jobs.tasks  # noqa: F401 - registers the job kinds

    if warm:
        _send_and_wait(queue, "noop", warm, {}, timeout)
    seconds = _send_and_wait(queue, kind, n, params, timeout)
    return {"queue": queue, "kind": kind, "n": n, "params": params, "seconds": seconds, "per_s": n / seconds}


def cleanup(queues: list[str]) -> dict:
    broker = _broker()
    deleted = broker.delete(*[f"_kombu.binding.{queue}" for queue in queues]) if queues else 0
    return {"deleted": deleted}


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "run":
        result = run(args[0], args[1], int(args[2]), json.loads(args[3]), int(args[4]), float(args[5]))
    elif command == "cleanup":
        result = cleanup(args)
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
