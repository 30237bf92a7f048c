"""unit: no services. JSON error answers and backing-service failure classification (web.errors)."""

import json

import pytest
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from django.test import RequestFactory
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework.exceptions import NotAuthenticated, ValidationError
from web import errors

from jobs.redis_memory import JobStoreFull


@pytest.mark.parametrize(
    "exc, service",
    [
        (OperationalError("could not connect to server: Connection refused"), "database"),
        (InterfaceError("connection already closed"), "database"),
        (RedisConnectionError("Error 111 connecting to redis:6379"), "redis"),
        (RedisTimeoutError("Timeout reading from socket"), "redis"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "redis"),
        (KombuOperationalError("Error 111 connecting to redis:6379"), "redis"),
        # The database answered: bad input or a bug, not an outage (a 500, or the view's 4xx).
        (DataError("A string literal cannot contain NUL (0x00) characters."), None),
        (IntegrityError("duplicate key value violates unique constraint"), None),
        (ProgrammingError('relation "jobs_job" does not exist'), None),
        (DatabaseError("Save with update_fields did not affect any rows."), None),
        (ValueError("a bug"), None),
        (KeyError("x"), None),
        (ResponseError("unknown command"), None),  # Redis answered: not "unavailable"
        (None, None),
    ],
)
def test_unavailable_service_classification(exc, service):
    assert errors.unavailable_service(exc) == service


def django_error_from(cause: Exception, wrapper=OperationalError):
    """The error Django raises for a driver error: its class, with the driver's as __cause__."""
    try:
        raise wrapper(str(cause)) from cause
    except wrapper as exc:
        return exc


def test_postgresql_out_of_disk_space_is_named_as_such():
    from psycopg import errors as pg_errors

    full = django_error_from(pg_errors.DiskFull("could not extend file: No space left on device"))
    assert errors.unavailable_service(full) == "database_disk"
    body = json.loads(errors.service_unavailable("database_disk").content)
    assert body["service"] == "database_disk" and "disk space" in body["detail"]
    # Any other operational error stays "the database is unavailable".
    refused = django_error_from(pg_errors.ConnectionTimeout("timeout expired"))
    assert errors.unavailable_service(refused) == "database"


@pytest.mark.parametrize(
    "exc",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        JobStoreFull("Redis is above the share of its memory new jobs may fill"),
    ],
)
def test_a_full_job_store_is_503_job_store_full(exc):
    assert errors.unavailable_service(exc) == "job_store"
    response = errors.service_unavailable("job_store")
    body = json.loads(response.content)
    assert response.status_code == 503 and response["Retry-After"]
    assert body == {"error": "job_store_full", "service": "job_store", "detail": errors.DETAILS["job_store"]}
    assert "full" in body["detail"]


@pytest.mark.parametrize("service, label", [("database", "PostgreSQL"), ("redis", "Redis")])
def test_service_unavailable_is_503_json_with_retry_after(service, label):
    response = errors.service_unavailable(service)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)
    body = json.loads(response.content)
    assert body["error"] == "service_unavailable"
    assert body["service"] == service
    assert label in body["detail"]


def _server_error_while_handling(exc):
    request = RequestFactory().get("/")
    try:
        raise exc
    except Exception:  # noqa: BLE001 - handler500 runs inside the failed request's except
        return errors.server_error(request)


@pytest.mark.parametrize(
    "exc, service", [(OperationalError("refused"), "database"), (RedisConnectionError("refused"), "redis")]
)
def test_server_error_is_503_when_a_service_is_the_cause(exc, service):
    response = _server_error_while_handling(exc)
    assert response.status_code == 503
    assert response["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)
    assert json.loads(response.content)["service"] == service


def test_server_error_is_500_json_without_internals():
    response = _server_error_while_handling(ValueError("secret detail /app/services/x.py"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"error": "server_error", "detail": "Internal server error."}
    assert not response.has_header("Retry-After")


def test_server_error_outside_an_exception_is_500():
    assert errors.server_error(RequestFactory().get("/")).status_code == 500


@pytest.mark.parametrize(
    "handler, status, code",
    [
        (errors.bad_request, 400, "bad_request"),
        (errors.permission_denied, 403, "forbidden"),
        (errors.not_found, 404, "not_found"),
    ],
)
def test_other_handlers_answer_json(handler, status, code):
    response = handler(RequestFactory().get("/"), Exception("x"))
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"] == code


def test_api_exception_handler_keeps_drf_answers():
    response = errors.api_exception_handler(ValidationError({"kind": ["bad"]}), {})
    assert response.status_code == 400
    assert response.data == {"kind": ["bad"]}
    assert errors.api_exception_handler(NotAuthenticated(), {}).status_code == 401


def test_api_exception_handler_turns_service_failures_into_503():
    response = errors.api_exception_handler(RedisTimeoutError("timeout"), {})
    assert response.status_code == 503
    assert json.loads(response.content)["service"] == "redis"
    response = errors.api_exception_handler(OperationalError("refused"), {})
    assert response.status_code == 503
    assert json.loads(response.content)["service"] == "database"


def test_api_exception_handler_leaves_bugs_to_django():
    # None: Django's handler500 (server_error above) answers, as a 500.
    assert errors.api_exception_handler(ValueError("bug"), {}) is None
