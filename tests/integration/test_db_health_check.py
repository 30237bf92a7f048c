"""The database backend's health check (config/postgresql) on the real PostgreSQL: a connection
that has just served a request is used without `SELECT 1`; one that has been idle is checked
first, so a connection PostgreSQL dropped meanwhile is replaced before the request's first query."""

import time

import pytest
from django.db import OperationalError, connection

from config.postgresql.base import HEALTH_CHECK_IDLE_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)


def request() -> int:
    """One request's database use, as Django's request signals frame it; the backend's pid."""
    connection.close_if_unusable_or_obsolete()  # request_started
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    finally:
        connection.close_if_unusable_or_obsolete()  # request_finished


def terminate(pid: int) -> None:
    """End a server process from a second connection, as a PostgreSQL restart ends them all."""
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0] is True
    finally:
        other.close()


@pytest.fixture
def checks(monkeypatch):
    """The health checks the connection runs (each a SELECT 1 round trip), counted."""
    seen = []
    is_usable = connection.is_usable

    def counted():
        seen.append(time.monotonic())
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    yield seen
    connection.close()


def test_a_connection_that_just_worked_is_not_checked_again(checks):
    first = request()
    assert [request() for _ in range(5)] == [first] * 5
    assert checks == []


def test_an_idle_connection_is_checked_and_replaced_if_postgresql_dropped_it(checks):
    first = request()
    time.sleep(HEALTH_CHECK_IDLE_SECONDS + 0.2)
    assert request() == first
    assert len(checks) == 1, "an idle connection is checked before its first query"

    time.sleep(HEALTH_CHECK_IDLE_SECONDS + 0.2)
    terminate(first)
    replaced = request()
    assert replaced != first
    assert len(checks) == 2


def test_a_connection_dropped_within_the_idle_time_fails_one_query_then_is_replaced(checks):
    # The price of skipping the check: PostgreSQL ending a connection less than a second after
    # it worked (a restart takes longer) fails that connection's next query; the request's end
    # then closes it, and the next request connects afresh.
    first = request()
    terminate(first)
    with pytest.raises(OperationalError):
        request()
    assert request() != first
