"""JSON error answers: an unavailable database or Redis is a 503, never a 500 page or a hang."""

import sys

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import OutOfMemoryError
from rest_framework.exceptions import Throttled
from rest_framework.views import exception_handler

from jobs.job_store import REDIS_UNAVAILABLE

# Errors that mean "a backing service is away or full", not "the code is wrong". Not
# DatabaseError: its IntegrityError, DataError and ProgrammingError are bugs or bad input.
# PostgreSQL out of disk space is an OperationalError (psycopg2's DiskFull), told apart below.
UNAVAILABLE = {
    "database": (OperationalError, InterfaceError),
    "redis": (*REDIS_UNAVAILABLE, BrokerError),
    # Redis at its memory limit (maxmemory, no eviction), or above the share new jobs may fill
    # (jobs.redis_memory.JobStoreFull, an OutOfMemoryError).
    "job_store": (OutOfMemoryError,),
}
DETAILS = {
    "database": "The database (PostgreSQL) is unavailable; try again shortly.",
    "database_disk": "The database (PostgreSQL) is out of disk space; try again later.",
    "redis": "Redis is unavailable; try again shortly.",
    "rabbitmq": "The message broker (RabbitMQ) is unavailable; try again shortly.",
    "job_store": "The job store (Redis) is full: no new job is accepted until running ones "
    "finish; try again shortly.",
}
RETRY_AFTER_SECONDS = 5
# SQLSTATE 53100 disk_full: PostgreSQL could not extend a file.
DISK_FULL = "53100"


def unavailable_service(exc: BaseException | None) -> str | None:
    """Name of the backing service whose failure raised exc, if it is one of them."""
    if isinstance(exc, BrokerError) and settings.BROKER == "rabbitmq":
        return "rabbitmq"  # on the Redis broker the same error means Redis is away
    if isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) == DISK_FULL:
        return "database_disk"
    for service, types in UNAVAILABLE.items():
        if isinstance(exc, types):
            return service
    return None


def service_unavailable(service: str) -> JsonResponse:
    response = JsonResponse(
        {
            "error": "job_store_full" if service == "job_store" else "service_unavailable",
            "service": service,
            "detail": DETAILS[service],
        },
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def api_exception_handler(exc, context):
    """DRF's handler, plus 503 for backing-service failures raised inside API views."""
    response = exception_handler(exc, context)
    if isinstance(exc, Throttled) and response is not None:
        # DRF's answer (429, Retry-After) with the same error field as the others.
        response.data = {"error": "rate_limited", **response.data, "retry_after": exc.wait}
        return response
    if response is None:
        service = unavailable_service(exc)
        if service:
            return service_unavailable(service)
    return response


def bad_request(request, exception=None):
    return JsonResponse({"error": "bad_request", "detail": "Bad request."}, status=400)


def permission_denied(request, exception=None):
    return JsonResponse({"error": "forbidden", "detail": "Permission denied."}, status=403)


def not_found(request, exception=None):
    return JsonResponse({"error": "not_found", "detail": "Not found."}, status=404)


def server_error(request):
    """Last resort (handler500): still JSON, and still 503 when a service is the cause."""
    service = unavailable_service(sys.exc_info()[1])
    if service:
        return service_unavailable(service)
    return JsonResponse({"error": "server_error", "detail": "Internal server error."}, status=500)
