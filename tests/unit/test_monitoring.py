"""Unit (no services): the pieces of the monitoring overlay that are plain logic - the template
renderer of its configuration, the log formats, the job counters, the backup's record, and the
settings that switch metrics and JSON logs on. The overlay itself runs in tests/e2e/test_monitoring.py."""

import datetime as dt
import io
import json
import logging
import logging.config
import os
import re
import stat
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.backuplib import METRIC, metric_path, metric_text, write_metric
from tests.support.stack import ROOT

RENDER = ROOT / "compose" / "monitoring" / "render"


# --- compose/monitoring/render -------------------------------------------------------------------


def render(tmp_path, text: str, **env: str) -> subprocess.CompletedProcess:
    template = tmp_path / "template.yml"
    template.write_text(text)
    return subprocess.run(
        ["sh", str(RENDER), str(template)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_render_takes_variables_or_their_defaults_and_leaves_prometheus_templates_alone(tmp_path):
    text = (
        'for: ${ALERT_FOR:-20m}\nexpr: x > ${RATIO:-0.2}\nsummary: "{{ $labels.queue }} {{ $value }}"\n'
        "empty: ${EMPTY:-5m}\n"
    )
    result = render(tmp_path, text, ALERT_FOR="15s", EMPTY="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'for: 15s\nexpr: x > 0.2\nsummary: "{{ $labels.queue }} {{ $value }}"\nempty: 5m\n'
    )


def test_render_refuses_a_variable_with_no_value_and_no_default_by_name(tmp_path):
    result = render(tmp_path, "host: ${CERT_HOST}\n")
    assert result.returncode != 0
    assert "CERT_HOST is not set and has no default" in result.stderr


def test_every_variable_of_the_monitoring_templates_has_a_default(tmp_path):
    for name in ("prometheus/prometheus.yml", "prometheus/alerts.yml"):
        result = subprocess.run(
            ["sh", str(RENDER), str(ROOT / "compose" / "monitoring" / name)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"]},
        )
        assert result.returncode == 0, result.stderr
        assert not re.search(r"\$\{[A-Z]", result.stdout), name


# --- config/logs.py ----------------------------------------------------------------------------------


def configured_logger(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    from config.logs import logging_config

    config = logging_config(log_format, "INFO")
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    config["root"] = {"handlers": [], "level": "INFO"}
    config["loggers"] = {
        **config.get("loggers", {}),
        "monitoring-test": {"handlers": ["console"], "level": "INFO", "propagate": False},
    }
    logging.config.dictConfig(config)
    return logging.getLogger("monitoring-test"), stream


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_stays_the_plain_one_line_format():
    from config.logs import PLAIN_FORMAT, logging_config

    assert logging_config("text", "INFO") == {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": PLAIN_FORMAT}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["console"], "level": "INFO"},
    }


def test_json_lines_carry_the_request_and_job_ids_and_not_a_jobs_arguments():
    from django_guid import clear_guid, set_guid

    logger, stream = configured_logger("json")
    set_guid("0123456789abcdef0123456789abcdef")
    try:
        logger.info("Job %s submitted (%s)", "job-1", "noop", extra={"job_id": "job-1", "kind": "noop"})
        # Celery's own records carry a task's arguments in `data`; Django's its request object.
        logger.info(
            "Task received", extra={"data": {"kwargs": "{'api_key': 'hunter2'}"}, "request": object()}
        )
    finally:
        clear_guid()
    logger.info("outside any request")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "Job job-1 submitted (noop)"
    assert first["request_id"] == "0123456789abcdef0123456789abcdef"
    assert (first["job_id"], first["kind"]) == ("job-1", "noop")
    assert {"time", "level", "logger"} <= first.keys() and first["level"] == "INFO"
    assert "data" not in second and "request" not in second and "hunter2" not in stream.getvalue()
    assert third["request_id"] is None and third["job_id"] is None


def test_json_lines_of_a_running_task_carry_its_id():
    from celery import Celery

    app = Celery("monitoring-test", set_as_current=False)

    @app.task(bind=True)
    def probe(self):
        logger.info("inside the task")

    logger, stream = configured_logger("json")
    # apply() runs the task in this process, as a pool process does: the filter sees it running.
    probe.apply(task_id="job-42")
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["job_id"] == "job-42", line


# --- jobs/metrics.py -----------------------------------------------------------------------------


class FakeTask:
    def __init__(self, name):
        self.name = name


def value(counter, *labels) -> float:
    return counter.labels(*labels)._value.get()


def test_only_job_kinds_are_counted_by_kind():
    from celery import signals

    from jobs import metrics

    assert metrics.kind_of(FakeTask("jobs.noop")) == "noop"
    assert metrics.kind_of(FakeTask("jobs.recover_lost_jobs")) is None  # housekeeping, no job kind
    assert metrics.kind_of(FakeTask("other.noop")) is None
    before = (value(metrics.STARTED, "noop"), value(metrics.FAILED, "fail"), value(metrics.RETRIED, "flaky"))
    signals.task_prerun.send(sender=FakeTask("jobs.noop"), task_id="t1", task=None)
    signals.task_postrun.send(sender=FakeTask("jobs.noop"), task_id="t1", task=None, state="SUCCESS")
    signals.task_prerun.send(sender=FakeTask("jobs.recover_lost_jobs"), task_id="t2", task=None)
    signals.task_failure.send(sender=FakeTask("jobs.fail"), task_id="t3")
    signals.task_retry.send(sender=FakeTask("jobs.flaky"), request=None, reason="transient")
    after = (value(metrics.STARTED, "noop"), value(metrics.FAILED, "fail"), value(metrics.RETRIED, "flaky"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert metrics.RUN_SECONDS.labels("noop", "success")._sum.get() >= 0
    assert "t1" not in metrics._started_at and "t2" not in metrics._started_at


def test_initialised_counters_exist_at_zero_for_every_kind():
    from prometheus_client import CollectorRegistry, Counter

    from jobs import metrics
    from jobs.base import KINDS

    registry = CollectorRegistry()
    counter = Counter("probe_jobs", "test", ["kind"], registry=registry)
    metrics.initialise((counter,))
    assert {
        s.labels["kind"] for s in registry.collect().__next__().samples if s.name == "probe_jobs_total"
    } == set(KINDS)


# --- scripts/backup's record ---------------------------------------------------------------------


def test_the_backup_record_is_prometheus_text_written_whole_and_readable(tmp_path):
    when = dt.datetime(2026, 12, 2, 18, 30, 5, tzinfo=dt.UTC)
    families = {f.name: f for f in text_string_to_metric_families(metric_text("jobs", when, 1234))}
    [sample] = families[METRIC].samples
    assert sample.labels == {"project": "jobs"} and sample.value == when.timestamp()
    assert families["stack_backup_last_size_bytes"].samples[0].value == 1234

    path = write_metric(tmp_path, "jobs", when, 1234)
    assert path == metric_path(tmp_path, "jobs") and path.name.endswith(".prom")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the exporter runs as nobody
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left
    assert path.read_text() == metric_text("jobs", when, 1234)


# --- settings ------------------------------------------------------------------------------------


def load(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import json, config.settings as s; print(json.dumps({'middleware': s.MIDDLEWARE, "
        "'apps': s.INSTALLED_APPS, 'formatter': s.LOGGING['handlers']['console']['formatter']}))"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "METRICS_PORT")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "APP_ENV": "development", **env},
    )


def test_metrics_and_json_logs_are_off_by_default_and_on_when_asked_for():
    default = load()
    assert default.returncode == 0, default.stderr
    off = json.loads(default.stdout)
    assert off["formatter"] == "plain" and "django_guid" not in off["apps"]
    assert not any("prometheus" in m or "guid" in m for m in off["middleware"])

    on = load(LOG_FORMAT="json", METRICS_PORT="9808")
    assert on.returncode == 0, on.stderr
    on = json.loads(on.stdout)
    assert on["formatter"] == "json" and "django_guid" in on["apps"]
    assert on["middleware"][0] == "django_prometheus.middleware.PrometheusBeforeMiddleware"
    assert on["middleware"][1] == "django_guid.middleware.guid_middleware"
    assert on["middleware"][-1] == "django_prometheus.middleware.PrometheusAfterMiddleware"


def test_an_unknown_log_format_is_refused_by_name():
    result = load(LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be one of text, json, not 'xml'" in result.stderr
