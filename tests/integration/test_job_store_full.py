"""integration: Redis near or at its memory limit, on the real Redis 5.0 and worker.

New jobs are refused with 503 (job store full) once Redis holds JOB_STORE_ADMIT_PERCENT of its
maxmemory, and when Redis itself refuses the submission's writes; what was accepted still
finishes, its worker waiting for room to write the result. The limit is set on the live server
(CONFIG SET maxmemory) to reach it at once, and lifted again.
"""

import time

import pytest

from jobs import job_store, redis_memory
from jobs.models import Job
from tests.integration.helpers import redis_client, redis_keys

pytestmark = pytest.mark.django_db

# A submission's reading of Redis's memory is at most this old (jobs/job_store.py).
FRESH = redis_memory.MEMORY_READ_EVERY + 0.1


@pytest.fixture
def maxmemory():
    """Set Redis's maxmemory for the test (bytes; 0 = no limit), and lift it afterwards."""
    client = redis_client(0)

    def set_to(value: int) -> None:
        client.config_set("maxmemory", value)
        time.sleep(FRESH)

    yield set_to
    client.config_set("maxmemory", 0)
    time.sleep(FRESH)


def used_memory() -> int:
    return int(redis_client(0).info("memory")["used_memory"])


def assert_refused(response) -> None:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["error"] == "job_store_full" and body["service"] == "job_store"
    assert "full" in body["detail"]
    assert response["Retry-After"]


def test_above_the_admission_limit_new_jobs_get_503_and_reads_still_work(alice, maxmemory, settings):
    done = alice.submit("noop", name="before-full").json()["id"]
    alice.wait_for_state(done, "SUCCESS")
    rows, keys = Job.objects.count(), redis_keys()

    # used_memory is a third of maxmemory: above an admission limit of 10 %, well below Redis's
    # own (a margin that the memory idle clients use now and then cannot cross).
    settings.JOB_STORE_ADMIT_PERCENT = 10
    maxmemory(used_memory() * 3)
    assert_refused(alice.submit("noop", name="while-full"))
    assert Job.objects.count() == rows
    new_job_keys = {
        key for _, key in redis_keys() - keys if key.startswith((b"celery-task-meta-", b"jobs:record:"))
    }
    assert not new_job_keys
    # Reading, listing and resubmitting a known name still answer: they add no job.
    assert alice.get(done).json()["state"] == "SUCCESS"
    assert alice.client.get("/api/jobs/").status_code == 200
    assert alice.submit("noop", name="before-full").status_code == 200

    maxmemory(0)
    accepted = alice.submit("noop", name="while-full")
    assert accepted.status_code == 202
    alice.wait_for_state(accepted.json()["id"], "SUCCESS")


def test_when_redis_itself_refuses_the_submission_nothing_is_left(alice, maxmemory, settings):
    # The admission limit out of the way (95 %), Redis's own refusal at maxmemory: the
    # submission's transaction is refused whole, and its record rolled back.
    settings.JOB_STORE_ADMIT_PERCENT = 95
    rows = Job.objects.count()
    maxmemory(used_memory() // 2)
    assert_refused(alice.submit("noop", name="refused-by-redis"))
    assert Job.objects.count() == rows


def test_a_worker_keeps_a_finished_result_until_redis_has_room(alice, maxmemory):
    job_id = alice.submit("model_inference", {"text": "hold on", "steps": 4, "step_seconds": 0.5}).json()[
        "id"
    ]
    alice.wait_for_state(job_id, "PROGRESS")
    # Redis refuses every write from here on: the job's progress and its result must wait.
    maxmemory(1)
    time.sleep(3)
    assert job_store.read_meta(job_id)["status"] == "PROGRESS"
    maxmemory(0)
    body = alice.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=60)
    assert body["state"] == "SUCCESS"
    assert body["result"]["steps"] == 4
    # It ran once: waiting for room is not a failure or a retry.
    assert body["deliveries"] == 1
