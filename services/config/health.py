"""/healthz: is this web container able to serve? Checks PostgreSQL and Redis, fast."""

from celery import current_app
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from config.errors import unavailable_service


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    # The result backend's client: the same connection pool the job API reads through.
    current_app.backend.client.ping()


CHECKS = {"database": _check_database, "redis": _check_redis}


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
    return JsonResponse({"status": "ok" if healthy else "unavailable", **status},
                        status=200 if healthy else 503)
