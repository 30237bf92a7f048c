"""integration: `manage.py wait_for` (the Swarm roles' start gate) on the real PostgreSQL."""

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("what", ["database", "migrations"])
def test_returns_at_once_when_ready(what):
    err = io.StringIO()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (call_command("wait_for", what, stderr=err), done.set()))
    thread.start()
    thread.join(30)
    assert done.is_set(), f"wait_for {what} still waiting: {err.getvalue()}"
    assert "waiting" not in err.getvalue()


def test_waits_while_a_migration_is_missing(monkeypatch):
    """With a migration unapplied it keeps waiting, and says so once."""
    from jobs.management.commands import wait_for

    answers = iter([False, False, True])
    monkeypatch.setattr(wait_for, "INTERVAL", 0.05)
    monkeypatch.setitem(wait_for.CHECKS, "migrations", (lambda: next(answers), "the migrate job", "applied"))
    err = io.StringIO()
    call_command("wait_for", "migrations", stderr=err)
    assert err.getvalue().count("waiting for the migrate job") == 1
    assert "applied after" in err.getvalue()
    connection.close()
