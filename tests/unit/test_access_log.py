"""Unit test (no services): web's access line (web/access_log.py) is the line gunicorn's own
logger writes for the same request, with or without the proxy's header, and for odd values; its
handler is config.logs' BatchedStreamHandler (tests/unit/test_log_batching.py), whatever LOG_FORMAT."""

import datetime
import importlib
import io
import logging
import types

import pytest
from gunicorn import glogging
from gunicorn.config import Config
from web.access_log import FORMAT, AccessLogger

from config import gunicorn as gunicorn_conf
from config.logs import BatchedStreamHandler


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def line_of(logger_class, resp, req, environ, request_time, access_log_format=FORMAT):
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", access_log_format)
    logger = logger_class(cfg)
    lines = Lines()
    logger.access_log.addHandler(lines)
    try:
        logger.access(resp, req, environ, request_time)
    finally:
        logger.access_log.removeHandler(lines)
    (line,) = lines.lines
    return line


REQUESTS = [
    # (status, bytes sent, request headers, method, path, protocol, duration)
    (
        "200 OK",
        70,
        [("HOST", "localhost")],
        "GET",
        "/api/jobs/",
        "HTTP/1.1",
        datetime.timedelta(microseconds=3500),
    ),
    (
        "202 Accepted",
        512,
        [("HOST", "web"), ("X-FORWARDED-FOR", "203.0.113.7, 10.0.0.2")],
        "POST",
        "/api/jobs/",
        "HTTP/1.1",
        datetime.timedelta(seconds=2, microseconds=999999),
    ),
    # Two X-Forwarded-For headers: the last one is printed, by both.
    (
        "404 Not Found",
        0,
        [("X-FORWARDED-FOR", "a"), ("X-FORWARDED-FOR", "b")],
        "GET",
        "/x",
        "HTTP/1.0",
        datetime.timedelta(),
    ),
    # A quote in a field is escaped; a response that sent nothing yet prints None, as gunicorn's does.
    (
        "400 Bad Request",
        None,
        [("X-FORWARDED-FOR", 'evil" 1')],
        "GET",
        '/a"b',
        "HTTP/1.1",
        datetime.timedelta(0, 0, 999),
    ),
]


@pytest.mark.parametrize("status, sent, headers, method, path, protocol, took", REQUESTS)
def test_the_line_is_gunicorns_own(status, sent, headers, method, path, protocol, took):
    resp = types.SimpleNamespace(status=status, headers=[("Content-Type", "application/json")])
    if sent is not None:
        resp.sent = sent
    req = types.SimpleNamespace(headers=headers)
    environ = {
        "REMOTE_ADDR": "172.18.0.1",
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_PROTOCOL": protocol,
        "RAW_URI": path + "?token=secret",
        "QUERY_STRING": "token=secret",
        "HTTP_AUTHORIZATION": "Token secret",
    }
    ours = line_of(AccessLogger, resp, req, environ, took)
    assert ours == line_of(glogging.Logger, resp, req, environ, took)
    assert "secret" not in ours


def test_another_format_gets_gunicorns_fields():
    resp = types.SimpleNamespace(status="200 OK", sent=5, headers=[])
    req = types.SimpleNamespace(headers=[("USER-AGENT", "curl")])
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": "curl",
    }
    line = line_of(
        AccessLogger, resp, req, environ, datetime.timedelta(seconds=1), access_log_format="%(a)s %(s)s %(L)s"
    )
    assert line == "curl 200 1.000000"


@pytest.fixture
def logging_restored():
    """gunicorn's setup configures logging (dictConfig for JSON): put it back afterwards."""
    loggers = [logging.getLogger(name) for name in ("", "gunicorn.error", "gunicorn.access", "django_guid")]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    importlib.reload(gunicorn_conf)  # with the environment monkeypatch restored
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_log_of_web_is_batched(log_format, logging_restored, monkeypatch):
    # gunicorn set up by config/gunicorn.py, for each LOG_FORMAT: one batched handler on the
    # access log, with the format of the plain one it replaced; the error log is left alone.
    monkeypatch.setenv("LOG_FORMAT", log_format)
    settings = importlib.reload(gunicorn_conf)
    cfg = Config()
    for name in ("accesslog", "access_log_format", "logconfig_dict"):
        if hasattr(settings, name):
            cfg.set(name, getattr(settings, name))
    logger = AccessLogger(cfg)
    # (pytest's log capture adds handlers of its own: only the plain stream handlers count)
    (handler,) = [
        h for h in logger.access_log.handlers if type(h) in (logging.StreamHandler, BatchedStreamHandler)
    ]
    assert type(handler) is BatchedStreamHandler
    assert all(type(h) is not BatchedStreamHandler for h in logger.error_log.handlers)
    stream = io.StringIO()
    handler.setStream(stream)
    resp = types.SimpleNamespace(status="200 OK", sent=7, headers=[])
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    logger.access(resp, types.SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=2))
    handler.flush()
    line = stream.getvalue()
    if log_format == "json":
        assert '"logger": "gunicorn.access"' in line and "GET / HTTP/1.1" in line, line
    else:
        assert line == '10.0.0.1 - "GET / HTTP/1.1" 200 7 2ms\n'
