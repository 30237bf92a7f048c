"""integration: submitting through the real API URLconf, on real Redis 5.0, PostgreSQL and a worker.

The job id is derived from the token; the raw token must land nowhere: not in any Redis key or
value (every database, every data type), not in the job or token tables, not in the worker log.
"""

import uuid

import pytest
from django.conf import settings
from django.db import connection

from jobs import ids
from tests.integration.helpers import meta_key, redis_client, redis_dump, worker_log

pytestmark = pytest.mark.django_db


def test_submit_answers_202_with_id_url_page_and_location(alice):
    name = f"report-{uuid.uuid4().hex[:8]}"
    response = alice.submit("sum_number", {"x": 1, "y": 10}, name=name)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == ids.job_id(settings.JOB_ID_SECRET, alice.token, name, 1)
    assert body["created"] is True
    assert body["name"] == name and body["kind"] == "sum_number" and body["run"] == 1
    assert body["params"] == {"x": 1, "y": 10}
    assert body["state"] == "PENDING"
    assert body["url"] == f"/api/jobs/{body['id']}/"
    assert body["page"] == f"/jobs/{body['id']}/"
    assert response["Location"] == body["url"]
    # The state was written to the result backend at once: an id that was submitted is known.
    assert redis_client(1).exists(meta_key(body["id"]))

    done = alice.wait_for_state(body["id"], "SUCCESS")
    assert done["result"] == {"sum": 55, "count": 10}


def test_submit_without_name_gets_a_random_name(alice):
    first = alice.submit("noop").json()
    second = alice.submit("noop").json()
    assert first["name"] != second["name"]
    assert first["id"] != second["id"]
    assert first["id"] == ids.job_id(settings.JOB_ID_SECRET, alice.token, first["name"], 1)


def _rows_text(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT row_to_json(t)::text FROM {table} t")  # noqa: S608 - fixed names
        return "\n".join(row[0] for row in cursor.fetchall())


def test_raw_token_lands_nowhere(alice):
    token = alice.token
    name = "token-leak-check"
    job_id = alice.submit(
        "model_inference", {"text": "hello", "steps": 2, "step_seconds": 0.1}, name=name
    ).json()["id"]

    def assert_not_in_redis():
        dump = redis_dump()
        assert any(key.endswith(job_id.encode()) for _, key in dump), "the job's keys are missing"
        for (db, key), values in dump.items():
            for blob in (key, *values):
                assert token.encode() not in blob, f"raw token found in Redis db {db} key {key!r}"
                # not even knox's 15-character lookup prefix has any reason to be there
                assert token[:15].encode() not in blob, f"token prefix in Redis db {db} key {key!r}"

    assert_not_in_redis()  # while queued or running (the message may still be in the broker)
    alice.wait_for_state(job_id, "SUCCESS")
    assert_not_in_redis()  # and once finished

    jobs_text = _rows_text("jobs_job")
    assert job_id in jobs_text and name in jobs_text  # the query does see the row
    assert token not in jobs_text
    assert token[:15] not in jobs_text
    knox_text = _rows_text("knox_authtoken")
    assert knox_text, "the token's row is missing"
    assert token not in knox_text  # knox keeps a digest (plus its 15-character lookup prefix)
    assert token not in worker_log()
