"""integration: listing a user's jobs and an expired job's answer (states read from real Redis 5.0)."""

import pytest
from rest_framework.settings import api_settings

from tests.integration.helpers import meta_key, redis_client

pytestmark = pytest.mark.django_db


def test_expired_job_answers_410(alice):
    job_id = alice.submit("sum_number", {"x": 1, "y": 4}, name="will-expire").json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")

    # Simulates expiry: after JOB_RESULT_EXPIRES Redis holds no state and the record no outcome
    # it may show (test_archive.py ages an archived outcome past it); here the key is deleted at
    # once, and this test's record, uncommitted, is out of the worker's archiver's sight.
    assert redis_client(1).delete(meta_key(job_id)) == 1

    response = alice.get(job_id)
    assert response.status_code == 410
    body = response.json()
    assert body["state"] == "EXPIRED"
    assert body["id"] == job_id and body["name"] == "will-expire"
    assert "expired" in body["error"]
    assert body["result"] is None
    # Nothing to cancel any more: an expired job counts as finished.
    assert alice.delete(job_id).status_code == 409
    # Resubmitting the name (no rerun) returns the expired job rather than a duplicate...
    again = alice.submit("sum_number", {"x": 1, "y": 4}, name="will-expire")
    assert (again.status_code, again.json()["id"], again.json()["state"]) == (200, job_id, "EXPIRED")
    # ...and rerun starts run 2.
    rerun = alice.submit("sum_number", {"x": 1, "y": 4}, name="will-expire", rerun=True)
    assert rerun.status_code == 202 and rerun.json()["run"] == 2
    assert alice.wait_for_state(rerun.json()["id"], "SUCCESS")["result"] == {"sum": 10, "count": 4}


def test_list_is_newest_first_paginated_own_jobs_with_states_from_redis(alice, bob):
    page_size = api_settings.PAGE_SIZE
    total = page_size + 3
    submitted = []
    for number in range(total - 2):
        response = alice.submit("sum_number", {"x": 1, "y": number + 1}, name=f"list-{number:02}")
        submitted.append(response.json())
    submitted.append(alice.submit("fail", {"message": "listed failure"}, name="list-fail").json())
    submitted.append(alice.submit("noop", name="list-expired").json())
    bobs = bob.submit("noop", name="bobs-own").json()
    for job in submitted:
        alice.wait_for_state(job["id"], "SUCCESS", "FAILURE")
    bob.wait_for_state(bobs["id"], "SUCCESS")
    # The newest job's state is deleted from Redis (simulated expiry): the list must show it.
    redis_client(1).delete(meta_key(submitted[-1]["id"]))

    first = alice.client.get("/api/jobs/")
    assert first.status_code == 200
    page = first.json()
    assert page["count"] == total
    assert page["previous"] is None
    assert page["next"] and "page=2" in page["next"]
    assert len(page["results"]) == page_size

    second = alice.client.get("/api/jobs/?page=2").json()
    assert second["next"] is None and second["previous"]
    listed = page["results"] + second["results"]

    newest_first = [job["id"] for job in reversed(submitted)]
    assert [job["id"] for job in listed] == newest_first
    assert bobs["id"] not in {job["id"] for job in listed}

    assert listed[0]["name"] == "list-expired" and listed[0]["state"] == "EXPIRED"
    assert listed[1]["state"] == "FAILURE" and listed[1]["error"] == "listed failure"
    for job in listed[2:]:
        number = int(job["name"].split("-")[1])
        assert job["state"] == "SUCCESS"
        assert job["result"] == {"sum": (number + 1) * (number + 2) // 2, "count": number + 1}
        assert job["url"] == f"/api/jobs/{job['id']}/"

    # Bob sees only his own job.
    bobs_list = bob.client.get("/api/jobs/").json()
    assert [job["id"] for job in bobs_list["results"]] == [bobs["id"]]
    assert bobs_list["count"] == 1


def test_list_shows_live_states(alice):
    job_id = alice.submit("model_inference", {"text": "x", "steps": 3, "step_seconds": 0.2}).json()["id"]
    alice.wait_for_state(job_id, "PROGRESS")
    listed = alice.client.get("/api/jobs/").json()["results"]
    assert listed[0]["id"] == job_id
    assert listed[0]["state"] in ("PROGRESS", "SUCCESS")
    alice.wait_for_state(job_id, "SUCCESS")
    assert alice.client.get("/api/jobs/").json()["results"][0]["state"] == "SUCCESS"


def test_empty_list(alice):
    page = alice.client.get("/api/jobs/").json()
    assert page == {"count": 0, "next": None, "previous": None, "results": []}
