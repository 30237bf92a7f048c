"""The logging configuration of every app role: plain text (the default) or JSON lines.

LOG_FORMAT=json writes one JSON object per line (python-json-logger) with the time, level, logger
and message, plus:
- request_id: the request the line belongs to (django-guid's id, set per request by its
  middleware and, in a worker, per job from the job's message headers); null outside requests;
- job_id: the job the line is about: the one a worker is running when it logs, or the one a web
  line names (extra={"job_id": ...}); null when there is none.
Fields a log call adds with extra= (kind, ...) appear as keys of their own, but for two that
would say more than the text format does: Celery's `data` (a job's arguments, which its text lines
never show) and Django's `request` (the request object). Settings use it for
LOGGING (so do workers and beat, through django-guid's Celery integration) and gunicorn for its
own loggers (config/gunicorn.py), so every line of a container has the same shape.

Nothing here reads a request's headers or body: no token or secret can reach a line through it.
"""

import logging

from pythonjsonlogger.core import RESERVED_ATTRS

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Record attributes never written as JSON keys: the logging module's own, and the two above.
LEFT_OUT = ("data", "request")


class JobIdFilter(logging.Filter):
    """Adds job_id: the id of the Celery task this process runs now, unless the line names one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            # Celery's own TaskFormatter finds the running task the same way.
            from celery._state import get_current_task

            task = get_current_task()
            record.job_id = task.request.id if task is not None and task.request is not None else None
        return True


def logging_config(log_format: str, level: str, loggers: dict | None = None) -> dict:
    """A logging.config.dictConfig dictionary: every line to stdout in log_format, at level."""
    if log_format == "json":
        formatters = {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(message)s",
                # ISO 8601 in UTC, to the microsecond: what log collectors parse without being told.
                "timestamp": "time",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "reserved_attrs": [*RESERVED_ATTRS, *LEFT_OUT],
            }
        }
        handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id", "job_id"]}
        filters = {
            "request_id": {
                "()": "django_guid.log_filters.CorrelationId",
                "correlation_id_field": "request_id",
            },
            "job_id": {"()": JobIdFilter},
        }
    else:
        formatters = {"plain": {"format": PLAIN_FORMAT}}
        handler = {"class": "logging.StreamHandler", "formatter": "plain"}
        filters = {}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
    }
    if filters:
        config["filters"] = filters
    if log_format == "json":
        # django-guid says at INFO level each time it sets or hands on an id: noise on every request.
        config["loggers"] = {"django_guid": {"level": "WARNING"}}
    if loggers:
        config["loggers"] = {**config.get("loggers", {}), **loggers}
    return config
