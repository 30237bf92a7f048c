"""integration: what production limits per token and per kind, on the real Redis 5.0 and
PostgreSQL: submissions and reads over a token's rate (429, Retry-After), and the example kinds
off unless JOB_DEMO_KINDS names them."""

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.integration.helpers import JOBS_URL, Caller, redis_keys

pytestmark = pytest.mark.django_db


def another_token(caller: Caller) -> Caller:
    """A second token of the same user."""
    _, token = AuthToken.objects.create(user=caller.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return Caller(caller.user, token, client)


def test_a_token_over_its_submission_rate_gets_429_until_its_window_ends(alice, bob, settings):
    # A day's window, so that the test never straddles two windows.
    settings.API_SUBMIT_RATE = "3/day"
    for _ in range(3):
        assert alice.submit("noop").status_code == 202
    refused = alice.submit("noop")
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "rate_limited" and "throttled" in body["detail"]
    assert 0 < int(refused["Retry-After"]) <= 86400 and body["retry_after"] == int(refused["Retry-After"])
    # Per token: another user's token, and another token of the same user, have their own count;
    # reads are counted apart (and not limited here).
    assert bob.submit("noop").status_code == 202
    assert another_token(alice).submit("noop").status_code == 202
    assert alice.client.get(JOBS_URL).status_code == 200
    # The counters are keyed by an HMAC of the token, never the token.
    keys = b" ".join(key for _, key in redis_keys())
    assert b"jobs:rate:submit:" in keys
    assert alice.token.encode() not in keys and bob.token.encode() not in keys


def test_reads_have_their_own_rate(alice, settings):
    settings.API_READ_RATE = "2/day"
    job_id = alice.submit("noop").json()["id"]
    assert alice.get(job_id).status_code in (200, 410)
    assert alice.client.get(JOBS_URL).status_code == 200
    assert alice.get(job_id).status_code == 429
    assert alice.submit("noop").status_code == 202  # submissions are counted apart


def test_with_no_rate_set_nothing_is_counted(alice, settings):
    settings.API_SUBMIT_RATE = settings.API_READ_RATE = ""
    before = {key for _, key in redis_keys() if key.startswith(b"jobs:rate:")}
    for _ in range(5):
        assert alice.submit("noop").status_code == 202
    assert {key for _, key in redis_keys() if key.startswith(b"jobs:rate:")} == before


def test_example_kinds_are_refused_unless_named(alice, settings):
    settings.JOB_DEMO_KINDS = ["noop"]
    refused = alice.submit("allocate", {"megabytes": 1})
    assert refused.status_code == 400
    assert "JOB_DEMO_KINDS" in refused.json()["kind"][0]
    assert alice.submit("noop").status_code == 202
    settings.JOB_DEMO_KINDS = ["*"]
    assert alice.submit("sum_number", {"x": 1, "y": 2}).status_code == 202
