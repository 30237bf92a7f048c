"""Unit test (no services): config.logs.BatchedStreamHandler, what web's gunicorn processes log
through: lines written together within FLUSH_SECONDS, at once on flush (a process exiting), on a
warning, or a full batch; never a parent's lines from a forked child; and how the root logger's
handler of either LOG_FORMAT is replaced (config/gunicorn.py's when_ready)."""

import io
import logging
import logging.config
import os
import time

import pytest

from config import logs
from config.logs import BatchedStreamHandler, batch_stream_handlers, logging_config


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


# The tests emit while holding the handler's lock (an RLock: the same thread may still log and
# flush), so that the writer thread, which takes it to write, cannot write in between however
# slow the machine: what they assert is held is held.


def batched_logger(stream) -> tuple[logging.Logger, BatchedStreamHandler]:
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("test-access")
    logger.addHandler(handler)
    return logger, handler


def test_lines_are_written_together_within_the_flush_interval():
    stream = Writes()
    logger, handler = batched_logger(stream)
    with handler.lock:
        for n in range(50):
            logger.info("line %d", n)
        assert stream.getvalue() == ""  # held, not yet written
    deadline = time.monotonic() + 10 * logs.FLUSH_SECONDS
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(logs.FLUSH_SECONDS / 10)
    assert stream.getvalue() == "".join(f"line {n}\n" for n in range(50))
    assert stream.writes == 1


def test_flush_writes_what_is_held_at_once():
    # logging.shutdown() calls flush() as a worker exits: its last lines are written.
    stream = Writes()
    logger, handler = batched_logger(stream)
    with handler.lock:
        logger.info("last")
        handler.flush()
        assert stream.getvalue() == "last\n"
    handler.flush()
    assert stream.writes == 1


def test_a_full_batch_is_written_at_once(monkeypatch):
    monkeypatch.setattr(logs, "MAX_PENDING", 3)
    stream = Writes()
    logger, handler = batched_logger(stream)
    with handler.lock:
        for n in range(7):
            logger.info("%d", n)
        assert stream.getvalue() == "0\n1\n2\n3\n4\n5\n"
        assert stream.writes == 2


def test_a_forked_process_does_not_write_its_parents_lines(monkeypatch):
    stream = Writes()
    logger, handler = batched_logger(stream)
    with handler.lock:
        logger.info("parent's")
        monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child of this process
        logger.info("child's")
        handler.flush()
        assert stream.getvalue() == "child's\n"


def test_a_warning_goes_out_at_once_after_the_lines_before_it():
    stream = Writes()
    logger, handler = batched_logger(stream)
    with handler.lock:
        logger.info("before")
        logger.warning("now")
        assert stream.getvalue() == "before\nnow\n"
        assert stream.writes == 1


@pytest.fixture
def root_restored():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_root_loggers_handler_of_either_format_is_batched(log_format, root_restored):
    logging.config.dictConfig(logging_config(log_format, "INFO"))
    (plain,) = [h for h in root_restored.handlers if type(h) is logging.StreamHandler]
    batch_stream_handlers(root_restored)
    (batched,) = [
        h for h in root_restored.handlers if type(h) in (logging.StreamHandler, BatchedStreamHandler)
    ]
    assert type(batched) is BatchedStreamHandler
    assert batched.formatter is plain.formatter and batched.filters == plain.filters
    stream = io.StringIO()
    batched.setStream(stream)
    with batched.lock:
        logging.getLogger("jobs.test").info("Job %s submitted", "j1", extra={"job_id": "j1"})
        assert stream.getvalue() == ""
    batched.flush()
    if log_format == "json":
        assert '"message": "Job j1 submitted"' in stream.getvalue() and '"job_id": "j1"' in stream.getvalue()
    else:
        assert stream.getvalue().endswith(" INFO jobs.test Job j1 submitted\n")
