"""Beat's database scheduler (jobs/beat_scheduler.py) on the real PostgreSQL: a database that
stops answering when the scheduler reads its whole schedule again (every 5 minutes) must not
end beat; the schedule last read is kept and read again once the database answers, and what
beat sent meanwhile is saved then."""

import datetime
import socket

import pytest
from django.db import OperationalError, connection
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler as LibraryScheduler

from config.celery import app
from jobs import beat_scheduler


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_down():
    """stop(): connections go to a port nothing listens on, as while PostgreSQL is stopped;
    start(): to PostgreSQL again."""
    with pytest.MonkeyPatch.context() as patch:

        def stop():
            patch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
            patch.setitem(connection.settings_dict, "PORT", str(closed_port()))
            connection.close()

        def start():
            patch.undo()
            connection.close()

        yield stop, start
        start()


@pytest.mark.django_db(transaction=True)
def test_a_full_read_while_the_database_is_down_keeps_beat_running(tmp_path, monkeypatch, database_down):
    monkeypatch.setattr(beat_scheduler, "HEARTBEAT_FILE", tmp_path / "heartbeat")
    stop, start = database_down
    scheduler = beat_scheduler.DatabaseScheduler(app=app)
    names = set(scheduler.schedule)
    assert "recover-lost-jobs" in names, names
    scheduler.tick()
    last_read = scheduler._last_full_sync

    stop()
    # The library's own scheduler, at its 5-minute full read with the database down, raises
    # out of the tick: beat's loop has no handler, so beat exits.
    library = LibraryScheduler(app=app, lazy=True)
    library._schedule, library._initial_read = dict(scheduler._schedule), False
    library._last_full_sync = last_read - datetime.timedelta(minutes=10)
    with pytest.raises(OperationalError):
        library.tick()

    scheduler._last_full_sync = last_read - datetime.timedelta(minutes=10)
    interval = scheduler.tick()
    assert interval == beat_scheduler.RETRY_AFTER
    assert set(scheduler._schedule) == names, "the schedule last read was not kept"
    assert (tmp_path / "heartbeat").exists(), "the loop's heartbeat was not touched"
    # Still down on the next tick: still running, the full read tried again.
    assert scheduler.tick() == beat_scheduler.RETRY_AFTER

    start()
    scheduler.tick()
    assert scheduler._last_full_sync > last_read, "the schedule was not read again once the database answered"
    assert set(scheduler._schedule) == names


@pytest.mark.django_db(transaction=True)
def test_an_entry_sent_while_the_database_is_down_is_saved_once_it_answers(database_down):
    stop, start = database_down
    scheduler = beat_scheduler.DatabaseScheduler(app=app)
    entry = scheduler.schedule["recover-lost-jobs"]
    before = PeriodicTask.objects.get(name="recover-lost-jobs").last_run_at

    stop()
    # What beat's tick does as it sends an entry, then the save that follows each send
    # (CELERY_BEAT_SYNC_EVERY = 1).
    sent = scheduler.reserve(entry)
    scheduler._schedule[sent.name] = sent
    scheduler.sync()
    assert sent.name in scheduler._dirty, "the entry whose save failed was forgotten"

    start()
    scheduler.sync()
    assert not scheduler._dirty
    saved = PeriodicTask.objects.get(name="recover-lost-jobs")
    assert saved.last_run_at == sent.last_run_at != before
