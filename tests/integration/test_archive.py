"""integration: finished jobs move from Redis into their PostgreSQL record (jobs/archive.py), and
read the same once Redis no longer holds them - on the real Redis 5.0, PostgreSQL and worker.

The records must be committed for the worker's archiver to see them: these tests use
transactional database access (django_db(transaction=True)), not a rolled-back transaction.
"""

import io
import json
import socket
import time
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs import archive, job_store
from jobs.models import Job
from tests.integration.conftest import WORKER_NAME
from tests.integration.helpers import redis_client
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def archived(job_id: str, timeout: float = 30) -> Job:
    """The job's record once the worker's archiver wrote its outcome."""
    return wait_until(
        lambda: Job.objects.filter(pk=job_id, outcome__isnull=False).first(),
        timeout=timeout,
        interval=0.1,
        what=f"job {job_id} archived",
    )


def job_keys(job_id: str) -> list[bytes | str]:
    return [
        job_store.meta_key(job_id),
        job_store.RECORD_PREFIX + job_id,
        job_store.DELIVERIES_PREFIX + job_id,
    ]


def drop_from_redis(job_id: str) -> None:
    """What JOB_HOT_SECONDS after the finish does: the job's keys leave Redis."""
    redis_client(1).delete(*job_keys(job_id))


def job_command(name: str) -> dict:
    """`manage.py job status --name NAME`, the token in JOB_TOKEN as from any container."""
    out = io.StringIO()
    call_command("job", "status", "--name", name, stdout=out)
    return json.loads(out.getvalue())


def test_a_finished_job_reads_the_same_after_it_left_redis_until_it_expires(alice, monkeypatch):
    job_id = alice.submit("sum_number", {"x": 1, "y": 100}, name="archived-sum").json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")
    record = archived(job_id)
    before = alice.get(job_id).json()
    listed_before = alice.client.get("/api/jobs/").json()["results"][0]
    monkeypatch.setenv("JOB_TOKEN", alice.token)
    command_before = job_command("archived-sum")

    assert record.outcome["status"] == "SUCCESS"
    assert record.outcome["result"]["output"] == {"sum": 5050, "count": 100}
    assert "traceback" not in record.outcome
    # Once archived, Redis keeps the job only for the hot window after its finish.
    for key in job_keys(job_id):
        assert 0 < redis_client(1).ttl(key) <= settings.JOB_HOT_SECONDS, key

    drop_from_redis(job_id)
    assert job_store.read_meta(job_id) is None
    after = alice.get(job_id)
    assert after.status_code == 200
    assert after.json() == before
    assert before["result"] == {"sum": 5050, "count": 100} and before["finished_at"]
    assert alice.client.get("/api/jobs/").json()["results"][0] == listed_before
    assert job_command("archived-sum") == command_before
    # Same name again: the finished run is the answer, as while Redis held it...
    again = alice.submit("sum_number", {"x": 1, "y": 100}, name="archived-sum")
    assert (again.status_code, again.json()["id"], again.json()["state"]) == (200, job_id, "SUCCESS")
    # ...and it cannot be cancelled any more.
    assert alice.delete(job_id).status_code == 409

    # Its retention (JOB_RESULT_EXPIRES after the finish) ends: 410, as when Redis expired it.
    Job.objects.filter(pk=job_id).update(
        finished_at=record.finished_at - timedelta(seconds=settings.CELERY_RESULT_EXPIRES)
    )
    gone = alice.get(job_id)
    assert gone.status_code == 410 and gone.json()["state"] == "EXPIRED"
    with pytest.raises(CommandError, match="expired"):
        job_command("archived-sum")
    rerun = alice.submit("sum_number", {"x": 1, "y": 3}, name="archived-sum", rerun=True)
    assert rerun.status_code == 202 and rerun.json()["run"] == 2


def test_failed_and_cancelled_jobs_keep_their_answers_after_they_left_redis(alice):
    failed = alice.submit("fail", {"message": "archived failure"}).json()["id"]
    queued = alice.submit(
        "model_inference", {"text": "x", "steps": 30, "step_seconds": 0.1}, name="to-cancel"
    ).json()["id"]
    alice.wait_for_state(failed, "FAILURE")
    assert alice.delete(queued).status_code == 202
    alice.wait_for_state(queued, "REVOKED")
    for job_id in (failed, queued):
        archived(job_id)
        before = alice.get(job_id).json()
        drop_from_redis(job_id)
        assert alice.get(job_id).json() == before
    assert alice.get(failed).json()["error"] == "archived failure"
    assert alice.get(queued).json()["error"] == "The job was cancelled."


def acknowledged(*job_ids: str) -> bool:
    """No message of these jobs waits in the broker's queue or is held unacknowledged by a worker."""
    broker = redis_client(0)
    waiting = {json.loads(raw)["headers"]["id"] for raw in broker.lrange("jobs", 0, -1)}
    held = {json.loads(raw)[0]["headers"]["id"] for raw in broker.hvals("unacked")}
    return not set(job_ids) & (waiting | held)


@pytest.fixture
def consumption_paused():
    """The session's worker takes no job from the queue until the test resumes it."""
    node = f"{WORKER_NAME}@{socket.gethostname()}"
    control = current_app.control
    assert control.cancel_consumer("jobs", destination=[node], reply=True, timeout=5), "no reply"
    paused = True

    def resume():
        nonlocal paused
        if paused:
            assert control.add_consumer("jobs", destination=[node], reply=True, timeout=5), "no reply"
            paused = False

    yield resume
    resume()


def test_the_message_of_a_job_cancelled_while_queued_rewrites_nothing_when_a_worker_takes_it(
    alice, consumption_paused
):
    kept, gone = (
        alice.submit("sum_number", {"x": 1, "y": 2}, name=f"cancel-queued-{n}").json()["id"] for n in (1, 2)
    )
    for job_id in (kept, gone):
        assert alice.delete(job_id).status_code == 202
        assert alice.get(job_id).json()["state"] == "REVOKED"
    archived(gone)
    drop_from_redis(gone)
    before = {job_id: alice.get(job_id).json() for job_id in (kept, gone)}
    kept_meta = redis_client(1).get(job_store.meta_key(kept))
    consumption_paused()
    # A worker writes whatever it writes for a message before it acknowledges it.
    wait_until(lambda: acknowledged(kept, gone), timeout=30, interval=0.1, what="both messages acknowledged")
    assert {job_id: alice.get(job_id).json() for job_id in (kept, gone)} == before
    assert redis_client(1).get(job_store.meta_key(kept)) == kept_meta
    assert not redis_client(1).exists(job_store.meta_key(gone))


@pytest.fixture
def archive_paused():
    """The worker's archiver skips its passes (the stack-wide lock is held here), so a test can
    run passes itself, one at a time."""
    client = job_store.backend_client()
    client.set(archive.LOCK_KEY, b"held-by-test", ex=120)
    yield
    client.delete(archive.LOCK_KEY)


def fake_finished(
    count: int, ago: float = 3600, task: str = "jobs.purge_old_job_records", date_done: bool = False
) -> list[str]:
    """Finished states of tasks with no job record (as the housekeeping tasks leave), finished
    `ago` seconds ago (an hour by default: before anything else in the index, so that a pass
    takes them first); with date_done, their metas say when, as Celery's do."""
    import uuid
    from datetime import UTC, datetime

    ids = [str(uuid.uuid4()) for _ in range(count)]
    client = job_store.backend_client()
    finished = time.time() - ago
    done = {"date_done": datetime.fromtimestamp(finished, UTC).isoformat()} if date_done else {}
    with client.pipeline(transaction=False) as pipe:
        for number, job_id in enumerate(ids):
            pipe.set(
                job_store.meta_key(job_id),
                json.dumps({"status": "SUCCESS", "result": None, "name": task, "task_id": job_id, **done}),
                ex=3600,
            )
            pipe.zadd(job_store.FINISHED_INDEX, {job_id: finished + number / 1000})
        pipe.execute()
    return ids


def test_a_pass_takes_at_most_a_batch_and_cuts_the_life_of_what_it_took(archive_paused):
    ids = fake_finished(archive.BATCH + 20)
    client = job_store.backend_client()
    assert archive.Archiver().archive_batch() == archive.BATCH
    left = {member.decode() for member in client.zrange(job_store.FINISHED_INDEX, 0, -1)}
    assert len(left & set(ids)) == 20
    taken = [job_id for job_id in ids if job_id not in left]
    # They finished longer ago than the hot window: gone from Redis at once.
    assert not any(client.exists(job_store.meta_key(job_id)) for job_id in taken)
    assert archive.Archiver().archive_batch() >= 20
    assert not {member.decode() for member in client.zrange(job_store.FINISHED_INDEX, 0, -1)} & set(ids)


def test_a_job_that_finished_again_meanwhile_keeps_its_newer_entry(archive_paused):
    (job_id,) = fake_finished(1)
    client = job_store.backend_client()
    read_score = client.zscore(job_store.FINISHED_INDEX, job_id)
    client.zadd(job_store.FINISHED_INDEX, {job_id: read_score + 5})  # it finished again
    keys = [job_store.FINISHED_INDEX, *job_keys(job_id)]
    assert client.eval(archive.RELEASE, len(keys), *keys, 0, time.time(), job_id, repr(read_score)) == 0
    assert client.zscore(job_store.FINISHED_INDEX, job_id) == read_score + 5
    assert client.ttl(job_store.meta_key(job_id)) > settings.JOB_HOT_SECONDS


def test_a_running_job_is_never_cut_short(archive_paused):
    # An entry whose job runs again (delivered anew after it finished) loses its entry, not its state.
    (job_id,) = fake_finished(1)
    client = job_store.backend_client()
    client.set(job_store.meta_key(job_id), json.dumps({"status": "STARTED", "result": None}), ex=3600)
    assert archive.Archiver().archive_batch() >= 1
    assert client.zscore(job_store.FINISHED_INDEX, job_id) is None
    assert client.ttl(job_store.meta_key(job_id)) > 3000


def test_a_job_that_finished_before_its_record_was_committed_waits_for_it(archive_paused, alice):
    # Web commits a job's record after the Redis transaction that publishes it: a fast job can
    # finish first. Its entry must wait for the record, not leave Redis with no outcome kept.
    (job_id,) = fake_finished(1, ago=5, task="jobs.noop")
    client = job_store.backend_client()
    assert archive.Archiver().archive_batch() >= 1
    assert client.zscore(job_store.FINISHED_INDEX, job_id) is not None
    assert client.ttl(job_store.meta_key(job_id)) > settings.JOB_HOT_SECONDS

    Job.objects.create(id=job_id, owner="0" * 32, user=alice.user, name="late-record", kind="noop")
    archive_all([job_id])
    record = Job.objects.get(pk=job_id)
    assert record.outcome["status"] == "SUCCESS"
    assert 0 < client.ttl(job_store.meta_key(job_id)) <= settings.JOB_HOT_SECONDS


def test_entries_waiting_for_their_record_hold_back_neither_the_archive_nor_the_worker(archive_paused):
    # A job kind's tasks sent without the API (no record will ever come): a full batch of them,
    # oldest in the index, then jobs that finished after them.
    index = job_store.FINISHED_INDEX
    client = job_store.backend_client()
    waiting = fake_finished(archive.BATCH + 10, ago=30, task="jobs.noop", date_done=True)
    behind = fake_finished(5, ago=20)
    archiver = archive.Archiver()
    assert archiver.archive_batch() == archive.BATCH
    assert archiver.released == 0
    archiver.archive_batch()
    # The second pass reached the entries behind the waiting ones and moved them out.
    assert not any(client.zscore(index, job_id) for job_id in behind)
    # The waiting ones are still listed, due again after about as long as they have waited,
    # so the next pass reads none of them.
    now = time.time()
    scores = [client.zscore(index, job_id) for job_id in waiting]
    assert all(score is not None and now + 20 < score < now + 40 for score in scores)
    # A pass now does not read them (reading them would move them again, to a later score);
    # other tests' jobs may finish meanwhile and be read, so the count is not asserted.
    archiver.archive_batch()
    assert [client.zscore(index, job_id) for job_id in waiting] == scores


def range_reads() -> int:
    stats = job_store.backend_client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("zrange", "zrangebyscore"))


def test_the_worker_waits_between_passes_that_moved_nothing(archive_paused, worker):
    # A full batch of waiting entries whose metas say nothing of when they finished stays where
    # it is; the worker's archiver (the lock released to it) must not read it again at once,
    # pass after pass (it did: most of a CPU for RECORD_WAIT).
    waiting = fake_finished(archive.BATCH, ago=30, task="jobs.noop")
    client = job_store.backend_client()
    client.delete(archive.LOCK_KEY)
    before = range_reads()
    time.sleep(3)
    reads = range_reads() - before
    client.set(archive.LOCK_KEY, b"held-by-test", ex=120)
    assert 1 <= reads <= 5, f"{reads} passes in 3 s"
    client.zrem(job_store.FINISHED_INDEX, *waiting)


def test_a_record_that_never_comes_is_waited_for_only_so_long(archive_paused):
    (job_id,) = fake_finished(1, ago=archive.RECORD_WAIT + 10, task="jobs.noop")
    archive_all([job_id])
    assert not job_store.backend_client().exists(job_store.meta_key(job_id))


def archive_all(ids: list[str]) -> None:
    """Run passes until none of these ids is left in the index."""
    client = job_store.backend_client()
    while any(client.zscore(job_store.FINISHED_INDEX, job_id) is not None for job_id in ids):
        archive.Archiver().archive_batch()


def test_while_redis_is_short_of_memory_archived_jobs_leave_it_at_once(archive_paused, settings):
    client = job_store.backend_client()
    calm = fake_finished(5, ago=0)
    archive_all(calm)
    assert all(0 < client.ttl(job_store.meta_key(job_id)) <= settings.JOB_HOT_SECONDS for job_id in calm)

    pressed = fake_finished(5, ago=0)
    used = int(client.info("memory")["used_memory"])
    settings.JOB_STORE_ADMIT_PERCENT = 10
    client.config_set("maxmemory", used * 5)  # used is 20 % of it: above the 10 % limit
    try:
        archive_all(pressed)
    finally:
        client.config_set("maxmemory", 0)
    assert not any(client.exists(job_store.meta_key(job_id)) for job_id in pressed)
