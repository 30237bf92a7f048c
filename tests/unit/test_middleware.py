"""unit: no services. BodySizeLimitMiddleware with RequestFactory (web.middleware)."""

import json

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from web.middleware import BodySizeLimitMiddleware, ServiceUnavailableMiddleware

LIMIT = 1000


class Downstream:
    """The rest of the stack: records whether the request got through."""

    def __init__(self):
        self.calls = 0

    def __call__(self, request):
        self.calls += 1
        return HttpResponse("through")


@pytest.fixture
def downstream():
    return Downstream()


@pytest.fixture
def middleware(downstream):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT):
        yield BodySizeLimitMiddleware(downstream)


def post(body: bytes, **extra):
    return RequestFactory().post("/api/jobs/", data=body, content_type="application/json", **extra)


def test_over_limit_content_length_is_413_json_and_never_read(middleware, downstream):
    request = post(b"x" * (LIMIT + 1))
    response = middleware(request)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"] == "payload_too_large"
    assert str(LIMIT) in body["detail"] and str(LIMIT + 1) in body["detail"]
    assert downstream.calls == 0


def test_declared_length_is_what_counts(middleware, downstream):
    # A client announcing a huge body is refused before anything reads it.
    request = post(b"{}")
    request.META["CONTENT_LENGTH"] = str(10**9)
    assert middleware(request).status_code == 413
    assert downstream.calls == 0


@pytest.mark.parametrize("value", ["abc", "12x", "1.5", "0x10"])
def test_invalid_content_length_is_400(middleware, downstream, value):
    request = post(b"{}")
    request.META["CONTENT_LENGTH"] = value
    response = middleware(request)
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == "bad_request"
    assert downstream.calls == 0


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_within_limit_passes_through(middleware, downstream, size):
    response = middleware(post(b"x" * size))
    assert response.status_code == 200
    assert response.content == b"through"
    assert downstream.calls == 1


def test_no_or_empty_content_length_passes_through(middleware, downstream):
    request = RequestFactory().get("/api/jobs/")
    request.META.pop("CONTENT_LENGTH", None)
    assert middleware(request).status_code == 200
    request = RequestFactory().get("/api/jobs/")
    request.META["CONTENT_LENGTH"] = ""
    assert middleware(request).status_code == 200
    assert downstream.calls == 2


def test_no_limit_configured_lets_everything_through(downstream):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None):
        response = BodySizeLimitMiddleware(downstream)(post(b"x" * (LIMIT * 10)))
    assert response.status_code == 200
    assert downstream.calls == 1


def test_the_default_limit_is_read_per_request(downstream):
    middleware = BodySizeLimitMiddleware(downstream)
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10):
        assert middleware(post(b"x" * 11)).status_code == 413
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        assert middleware(post(b"x" * 11)).status_code == 200


def test_service_unavailable_middleware_turns_service_errors_into_503(downstream):
    from django.db import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    middleware = ServiceUnavailableMiddleware(downstream)
    request = RequestFactory().get("/")
    assert middleware.process_exception(request, ValueError("bug")) is None
    db = middleware.process_exception(request, OperationalError("connection refused"))
    assert db.status_code == 503 and json.loads(db.content)["service"] == "database"
    rd = middleware.process_exception(request, RedisConnectionError("refused"))
    assert rd.status_code == 503 and json.loads(rd.content)["service"] == "redis"
