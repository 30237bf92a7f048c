"""unit: no services. The job store's pure parts: when new jobs are refused, which record outcome
a read may show, what the archive keeps of a meta (jobs/job_store.py, jobs/archive.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from jobs import job_store, outcomes, redis_memory
from jobs.models import Job

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_memory_info_gives_used_and_max():
    assert redis_memory.parse_memory_info({"used_memory": 1500, "maxmemory": 2000, "used_memory_rss": 9}) == (
        1500,
        2000,
    )
    assert redis_memory.parse_memory_info({}) == (0, 0)


@pytest.mark.parametrize(
    "used, maximum, percent, full",
    [
        (79, 100, 80, False),
        (80, 100, 80, True),
        (95, 100, 80, True),
        (10**9, 0, 80, False),  # no maxmemory: no limit known, nothing refused
        (322_122_547 * 80 // 100, 322_122_547, 80, False),
        (322_122_547 * 80 // 100 + 1, 322_122_547, 80, True),
    ],
)
def test_admission_limit(used, maximum, percent, full):
    assert redis_memory.over_admit_limit(used, maximum, percent) is full


def job(outcome=None, finished_at=None) -> Job:
    return Job(id="5662d11d-34b6-6dd6-785e-b558439d469c", outcome=outcome, finished_at=finished_at)


def test_a_record_outcome_is_shown_until_the_result_expiry(settings):
    settings.CELERY_RESULT_EXPIRES = 3600
    outcome = {"status": "SUCCESS", "result": {"output": 1}, "date_done": "2026-12-07T11:00:00+00:00"}
    assert job_store.archived_meta(job(outcome, NOW - timedelta(seconds=3599)), now=NOW) == outcome
    assert job_store.archived_meta(job(outcome, NOW - timedelta(seconds=3600)), now=NOW) is None
    assert job_store.archived_meta(job(), now=NOW) is None  # not finished (or not archived yet)


def test_redis_state_wins_over_the_record(settings):
    settings.CELERY_RESULT_EXPIRES = 3600
    archived = job({"status": "FAILURE", "result": None}, datetime.now(UTC))
    running_again = {"status": "STARTED", "result": {}}
    assert job_store.current_meta(archived, running_again) is running_again
    assert job_store.current_meta(archived, None) == {"status": "FAILURE", "result": None}


def test_the_archive_keeps_what_a_read_shows_and_no_traceback():
    meta = {
        "status": "FAILURE",
        "result": {"exc_type": "JobError", "exc_message": ["no"]},
        "traceback": "Traceback (most recent call last): /app/jobs/tasks.py ...",
        "children": [],
        "date_done": "2026-12-07T11:00:00+00:00",
        "name": "jobs.fail",
        "worker": "w1",
        "task_id": "x",
    }
    assert outcomes.outcome_of(meta) == {
        "status": "FAILURE",
        "result": {"exc_type": "JobError", "exc_message": ["no"]},
        "date_done": "2026-12-07T11:00:00+00:00",
    }


def test_nul_characters_cannot_stop_the_archive():
    # PostgreSQL's jsonb refuses \u0000; a job whose result holds one must not block the others.
    assert outcomes.without_nul({"a\x00": ["x\x00y", 1, None, {"k": "\x00"}]}) == {
        "a\ufffd": ["x\ufffdy", 1, None, {"k": "\ufffd"}]
    }


def test_finished_at_is_the_meta_date_done_else_when_it_was_listed():
    assert (
        outcomes.finished_at({"date_done": "2026-12-07T11:00:00+00:00"}, 5.0)
        == datetime(2026, 12, 7, 11, 0, tzinfo=UTC).timestamp()
    )
    assert outcomes.finished_at({"date_done": None}, 5.0) == 5.0
    assert outcomes.finished_at({}, 5.0) == 5.0


def test_only_job_kinds_wait_for_a_record():
    assert outcomes.is_job({"name": "jobs.noop"})
    assert outcomes.is_job({"status": "REVOKED"})  # written by web at cancellation: no task name
    assert not outcomes.is_job({"name": "jobs.purge_old_job_records"})
    assert not outcomes.is_job({"name": "benchpeer.noop"})


def test_your_kinds_are_always_on_examples_only_where_named(settings):
    from jobs.base import JobKind, kind_enabled

    mine, example = JobKind("mine", None, None, ""), JobKind("allocate", None, None, "", demo=True)
    settings.JOB_DEMO_KINDS = []
    assert kind_enabled(mine) and not kind_enabled(example)
    settings.JOB_DEMO_KINDS = ["noop", "allocate"]
    assert kind_enabled(example)
    settings.JOB_DEMO_KINDS = ["*"]
    assert kind_enabled(example)


@pytest.mark.parametrize(
    "rate, parsed",
    [("600/min", (600, 60)), ("10/s", (10, 1)), ("5/day", (5, 86400)), ("", None), (None, None)],
)
def test_rates_read_as_drf_reads_them(rate, parsed):
    from jobs.throttling import parse_rate

    assert parse_rate(rate) == parsed
