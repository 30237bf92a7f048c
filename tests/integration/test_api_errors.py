"""integration: the API's error answers on the real URLconf, with real knox tokens, PostgreSQL and Redis.

A refused submission must leave no trace: no Job row, no Redis key, no message for the worker.
"""

import json
import uuid

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from jobs import ids
from jobs.models import Job
from tests.integration.helpers import JOBS_URL, redis_keys

pytestmark = pytest.mark.django_db


# --- GET ------------------------------------------------------------------------------------------


def test_unknown_job_id_is_404(alice):
    never_submitted = ids.job_id(settings.JOB_ID_SECRET, alice.token, "never-submitted")
    response = alice.get(never_submitted)
    assert response.status_code == 404
    assert response.json()["detail"]
    assert alice.get(str(uuid.uuid4())).status_code == 404


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "5662D11D-34B6-6DD6-785E-B558439D469C",
        "5662d11d34b66dd6785eb558439d469c",
        "1%27%20OR%201=1",
        "5662d11d-34b6-6dd6-785e-b558439d469c%0A",
        "..%2F..%2Fetc",
    ],
)
def test_malformed_job_id_is_404(alice, bad_id):
    response = alice.client.get(f"{JOBS_URL}{bad_id}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert alice.client.delete(f"{JOBS_URL}{bad_id}/").status_code == 404


def test_another_users_job_is_404_for_read_and_cancel(alice, bob):
    job_id = bob.submit("sum_number", {"x": 1, "y": 2}).json()["id"]
    bob.wait_for_state(job_id, "SUCCESS")

    assert alice.get(job_id).status_code == 404
    assert alice.delete(job_id).status_code == 404
    # Same answer as for an id that never existed: nothing tells the job apart.
    assert alice.get(job_id).json() == alice.get(str(uuid.uuid4())).json()
    assert bob.get(job_id).status_code == 200


def test_no_token_is_401(alice):
    job_id = alice.submit("noop").json()["id"]
    anonymous = APIClient()
    for response in (
        anonymous.get(JOBS_URL),
        anonymous.get(f"{JOBS_URL}{job_id}/"),
        anonymous.post(JOBS_URL, {"kind": "noop"}, format="json"),
        anonymous.delete(f"{JOBS_URL}{job_id}/"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize(
    "header",
    [
        "Token " + "0" * 64,  # well-formed, unknown
        "Token abc",  # too short
        "Token",  # no credentials
        "Token a b",  # spaces
        "Token \xff\xfe\xfd\xe9\x80",  # non-ASCII bytes (as a WSGI server hands them over)
        "Token é" + "a" * 63,
        "Token \x00\x01\x02" + "a" * 61,  # control bytes
        "Token zz%%$$" + "a" * 58,
        "Bearer " + "0" * 64,  # another scheme: not authenticated at all
    ],
)
def test_wrong_or_weird_token_is_401_not_500(alice, header):
    job_id = alice.submit("noop").json()["id"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    for response in (client.get(JOBS_URL), client.get(f"{JOBS_URL}{job_id}/")):
        assert response.status_code == 401, (header, response.status_code, response.content)


def test_another_token_of_the_same_user_sees_the_same_jobs(alice):
    # Ownership is the user's: a second token of alice's reads her job (ids differ per token).
    from knox.models import AuthToken

    job_id = alice.submit("noop", name="shared").json()["id"]
    _, second_token = AuthToken.objects.create(user=alice.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {second_token}")
    assert client.get(f"{JOBS_URL}{job_id}/").status_code == 200


def test_whoami_names_the_tokens_user_and_refuses_a_wrong_token(alice):
    assert alice.client.get("/api/whoami/").json() == {"username": alice.user.username}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 64)
    assert client.get("/api/whoami/").status_code == 401


def test_expired_token_is_refused_and_deleted_while_a_live_one_of_the_user_works(alice):
    # Tokens made here never expire; one with an expiry still takes knox's expiry check and
    # cleanup path (the stack skips only the cleanup of tokens that cannot expire).
    from datetime import timedelta

    from knox.models import AuthToken

    record, expiring = AuthToken.objects.create(user=alice.user, expiry=timedelta(seconds=60))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {expiring}")
    assert client.get("/api/whoami/").status_code == 200
    AuthToken.objects.filter(pk=record.pk).update(expiry=record.expiry - timedelta(hours=1))
    assert client.get("/api/whoami/").status_code == 401
    assert not AuthToken.objects.filter(pk=record.pk).exists()
    assert alice.client.get("/api/whoami/").status_code == 200


# --- POST -----------------------------------------------------------------------------------------


@pytest.fixture
def no_trace():
    """Asserts that the test created no Job row and no job key in Redis."""
    rows_before = Job.objects.count()
    keys_before = redis_keys()
    yield
    assert Job.objects.count() == rows_before
    new_keys = {key for _, key in redis_keys() - keys_before}
    # Broker bookkeeping of the idle worker may come and go, and the caller's token is cached
    # (jobs:auth:<hmac>); a job would add its meta key (celery-task-meta-<id>), its record copy
    # (jobs:record:<id>) and a message in the "jobs" queue.
    # The worker may also start a job an earlier test submitted and count its delivery
    # (jobs:deliveries:<id>); that is no trace of this test as long as the job was there before.
    known = {key for _, key in keys_before}

    def earlier_jobs_delivery(key: bytes) -> bool:
        job_id = key.removeprefix(b"jobs:deliveries:")
        return job_id != key and bool({b"celery-task-meta-" + job_id, b"jobs:record:" + job_id} & known)

    # The workers' own bookkeeping (liveness index, archive and recovery locks, the index of
    # finished jobs to archive) is no trace of a request either.
    bookkeeping = (
        b"_kombu",
        b"unacked",
        b"jobs:auth:",
        b"jobs:workers",
        b"jobs:archive-lock",
        b"jobs:recovery-lock",
        b"jobs:finished",
    )
    job_keys = {key for key in new_keys if not key.startswith(bookkeeping) and not earlier_jobs_delivery(key)}
    assert not job_keys, job_keys


def _post_raw(caller, body: bytes | str, content_type: str = "application/json"):
    return caller.client.generic("POST", JOBS_URL, body, content_type=content_type)


def test_unknown_kind_is_400_naming_kind(alice, no_trace):
    response = alice.submit("launch_missiles", {})
    assert response.status_code == 400
    assert set(response.json()) == {"kind"}


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("sum_number", {"x": "one", "y": 2}, "x"),
        ("sum_number", {"x": 9, "y": 1}, "y"),
        ("model_inference", {"text": "hi", "steps": 1000}, "steps"),
        ("noop", {"extra": 1}, "extra"),
    ],
)
def test_bad_params_are_400_naming_the_field_under_params(alice, no_trace, kind, params, field):
    response = alice.submit(kind, params)
    assert response.status_code == 400
    assert list(response.json()) == ["params"]
    assert field in response.json()["params"]


def test_bad_name_is_400(alice, no_trace):
    response = alice.submit("noop", name="no spaces allowed")
    assert response.status_code == 400
    assert "name" in response.json()


@pytest.mark.parametrize("body", ['{"kind": "noop", ', "not json", '{"kind": "noop"}}', "\x00"])
def test_malformed_json_is_400(alice, no_trace, body):
    response = _post_raw(alice, body)
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_json_that_is_not_an_object_is_400(alice, no_trace):
    response = _post_raw(alice, json.dumps(["noop"]))
    assert response.status_code == 400


def test_body_over_the_limit_is_413(alice, no_trace):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"kind": "model_inference", "params": {"text": "x" * (limit + 10)}})
    response = _post_raw(alice, body)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
    ],
)
def test_wrong_content_type_is_415(alice, no_trace, content_type):
    response = _post_raw(alice, "kind=noop", content_type=content_type)
    assert response.status_code == 415
    assert content_type.split(";")[0] in response.json()["detail"]


# --- content negotiation (web/negotiation.py) -----------------------------------------------------


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_plain_accept_headers_get_json(alice, accept):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = alice.client.get("/api/whoami/", **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == json.dumps({"username": alice.user.username}, separators=(",", ":")).encode()


def test_accept_with_parameters_and_unserved_types_are_negotiated_by_drf(alice):
    indented = alice.client.get("/api/whoami/", HTTP_ACCEPT="application/json; indent=4")
    assert indented.status_code == 200
    assert indented.content == json.dumps({"username": alice.user.username}, indent=4).encode()
    assert alice.client.get("/api/whoami/", HTTP_ACCEPT="text/html").status_code == 406
    assert alice.client.get("/api/whoami/?format=xml").status_code == 404
