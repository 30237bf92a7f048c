"""/healthz: is this web container able to serve? Checks PostgreSQL, Redis and (BROKER=rabbitmq)
RabbitMQ, fast."""

from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from web.errors import unavailable_service


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    # The result backend's client: the same connection pool the job API reads through.
    current_app.backend.client.ping()


def _check_rabbitmq() -> None:
    # A fresh connection: a pooled one that RabbitMQ dropped in a restart still looks connected
    # until it is used. Opening the channel means RabbitMQ answered the AMQP handshake.
    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        connection.default_channel  # noqa: B018


CHECKS = {"database": _check_database, "redis": _check_redis}
if settings.BROKER == "rabbitmq":
    CHECKS["rabbitmq"] = _check_rabbitmq


@never_cache
def healthz(request):
    """200 with each part "ok", or 503 naming the part that is down (never a 500 or a hang)."""
    status = {}
    for name, check in CHECKS.items():
        try:
            check()
            status[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure of a check is an answer, not a crash
            status[name] = "down" if unavailable_service(exc) else f"error: {type(exc).__name__}"
            if name == "database":
                # Drop the broken connection so the next request reconnects.
                connection.close()
    healthy = all(value == "ok" for value in status.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **status}, status=200 if healthy else 503
    )
