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

In web's gunicorn processes, the lines go out in batches (BatchedStreamHandler, set by
config/gunicorn.py): a write per line cost web about 0.15 ms of CPU per request for the access
line and as much again for a submission's line, in the write and in the switch to another of
the process's threads that each write lets in (docs/benchmarks.md).
"""

import logging
import os
import threading
import time

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


FLUSH_SECONDS = 0.1  # how late a batched line is at most
MAX_PENDING = 1000  # lines held at most; the next one writes them all at once


class BatchedStreamHandler(logging.StreamHandler):
    """A StreamHandler that holds its lines and writes them in one write every FLUSH_SECONDS,
    from a thread of each process. A WARNING or worse goes out at once, after the lines held
    before it. flush() writes what is held: logging's shutdown calls it as a process exits, so
    a process that stops writes its last lines; one that is killed (SIGKILL, OOM) loses up to
    FLUSH_SECONDS of INFO lines."""

    def __init__(self, stream=None):
        super().__init__(stream)
        self._pending: list[str] = []
        self._pid: int | None = None  # the process whose writer thread runs

    def emit(self, record):
        # logging calls emit() holding self.lock.
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if self._pid != os.getpid():
            # A new process (a worker just forked): a writer thread of its own; lines held
            # before the fork are the parent's to write.
            self._pid = os.getpid()
            self._pending = []
            threading.Thread(
                target=self._write_every, args=(self._pid,), name="log-writer", daemon=True
            ).start()
        self._pending.append(line)
        if record.levelno >= logging.WARNING or len(self._pending) >= MAX_PENDING:
            self._write_pending()

    def flush(self):
        with self.lock:
            self._write_pending()

    def _write_pending(self):
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # what logging does with a line it cannot write: say so, go on
            if logging.raiseExceptions:
                import traceback

                traceback.print_exc()

    def _write_every(self, pid: int):
        while self._pid == pid:
            time.sleep(FLUSH_SECONDS)
            self.flush()


def batch_stream_handlers(logger: logging.Logger) -> None:
    """Replace the logger's plain StreamHandlers by BatchedStreamHandlers: the same stream,
    format, level and filters (filters still run as the line is logged, in its thread)."""
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            batched = BatchedStreamHandler(handler.stream)
            batched.setFormatter(handler.formatter)
            batched.setLevel(handler.level)
            batched.filters = list(handler.filters)
            batched._gunicorn = getattr(handler, "_gunicorn", False)  # gunicorn replaces its own on reload
            logger.removeHandler(handler)
            logger.addHandler(batched)


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
