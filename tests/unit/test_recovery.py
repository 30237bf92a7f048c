"""Unit (no services): which jobs the lost-job recovery counts as lost (jobs/lost_messages.py)."""

from datetime import UTC, datetime, timedelta

from jobs import lost_messages

JOB_A = "5662d11d-34b6-6dd6-785e-b558439d469c"
JOB_B = "0b0c9a52-8a9e-4d5e-9d7e-1f2a3b4c5d6e"


def test_only_an_absent_or_pending_state_looks_lost():
    assert lost_messages.looks_lost(None)
    assert lost_messages.looks_lost({"status": "PENDING"})
    for state in ("STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"):
        assert not lost_messages.looks_lost({"status": state}), state


def test_an_id_inside_any_queued_or_unacked_message_is_in_flight():
    queued = b'{"body": "W10=", "headers": {"id": "%s", "task": "jobs.noop"}}' % JOB_A.encode()
    unacked = b'[{"headers": {"id": "%s"}}, "", "jobs"]' % JOB_B.encode()
    assert lost_messages.not_in_flight([JOB_A, JOB_B], [queued]) == [JOB_B]
    assert lost_messages.not_in_flight([JOB_A, JOB_B], [queued, unacked]) == []
    assert lost_messages.not_in_flight([JOB_A, JOB_B], []) == [JOB_A, JOB_B]


def test_window_starts_after_the_grace_and_ends_before_results_expire():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    oldest, newest = lost_messages.window(now, after=300, expires=86400)
    assert newest == now - timedelta(seconds=300)
    # An absent state older than this may simply have expired: never republished.
    assert oldest == now - timedelta(seconds=86400 - 600)


def test_window_is_never_inverted_by_a_short_expiry():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    oldest, newest = lost_messages.window(now, after=300, expires=600)
    assert oldest == newest
