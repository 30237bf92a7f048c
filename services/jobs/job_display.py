"""How the pages show a job: its state line, times, progress and result (pure formatting of a
record and its meta; jobs/pages.py renders it)."""

import json
from datetime import UTC, datetime

from celery import states
from django.urls import reverse
from django.utils import timezone
from web.errors import DETAILS, unavailable_service

from jobs import presentation
from jobs.models import Job

# A job's result shown as JSON on its page up to this many characters (the API has all of it).
RESULT_JSON_LIMIT = 100_000


def parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def format_duration(seconds: float) -> str:
    """A short duration in words (pure; static/jobs/pages.js formats the same way)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_time(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else ""


def state_message(body: dict) -> str:
    """One line saying where the job is: its progress message while it runs, else its state's."""
    state = body["state"]
    if body["progress"]:
        return body["progress"]["message"] or ""
    if body["error"]:
        return body["error"]
    return {
        states.PENDING: "Queued: waiting for a worker.",
        states.STARTED: "Started.",
        states.SUCCESS: "Finished.",
    }.get(state, "")


def live_state(job: Job, meta: dict | None) -> dict:
    """What a page shows of a job and updates live: the same in the page's HTML and in the live
    poll's JSON. Nothing in it changes while the job does not (the poll's ETag is its hash): the
    elapsed time is counted by the page itself from these timestamps."""
    body = presentation.describe(meta)
    state = body["state"]
    progress = body["progress"]
    if state == states.SUCCESS:
        percent = 100.0
    elif progress and progress["percent"] is not None:
        percent = progress["percent"]
    else:
        percent = 0.0
    finished_at = body["finished_at"] or (job.finished_at.isoformat() if job.finished_at else None)
    return {
        "id": job.id,
        "state": state,
        "finished": state in presentation.FINISHED_STATES or state == presentation.EXPIRED,
        "percent": percent,
        "current": progress["current"] if progress else None,
        "total": progress["total"] if progress else None,
        "message": state_message(body),
        "error": body["error"],
        "submitted_at": job.submitted_at.isoformat(),
        "started_at": body["started_at"],
        "finished_at": finished_at,
        "deliveries": body["deliveries"],
    }


def job_view(job: Job, meta: dict | None, now: datetime | None = None) -> dict:
    """live_state plus what the HTML shows once: name, links, times in words."""
    live = live_state(job, meta)
    now = now or timezone.now()
    finished = parse_time(live["finished_at"])
    return {
        **live,
        "name": job.name,
        "kind": job.kind,
        "run": job.run,
        "url": reverse("job-page", args=[job.id]),
        "percent_text": f"{live['percent']:.0f} %",
        "submitted_text": format_time(job.submitted_at),
        "started_text": format_time(parse_time(live["started_at"])),
        "finished_text": format_time(finished),
        "elapsed_text": format_duration(((finished or now) - job.submitted_at).total_seconds()),
    }


def result_view(result) -> dict:
    """A result shown readably: a dict's top-level entries as a list of fields (nested values
    as JSON), and the whole result as indented JSON (collapsible on the page)."""
    pretty = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    fields = None
    if isinstance(result, dict):
        fields = [
            (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
            for key, value in result.items()
        ]
    return {
        "fields": fields,
        "json": pretty[:RESULT_JSON_LIMIT],
        "truncated": len(pretty) > RESULT_JSON_LIMIT,
    }


def unavailable_message(exc: BaseException) -> str | None:
    """What to tell a person when a backing service refused (Redis full or away, PostgreSQL
    away): the API's 503 detail. None for any other error (a bug: let it raise)."""
    service_name = unavailable_service(exc)
    return DETAILS[service_name] if service_name else None
