"""The pages people use: sign-in with Django's session (CSRF on every form; the API keeps tokens),
their jobs newest first with live state, a submit form per job kind, a job's page with cancel and
re-run, and self-service API tokens.

Live updates are conditional polling of GET /jobs/live/?id=... (an ETag per answer, 304 when
nothing changed), not server-sent events: gunicorn runs a few threads per process
(config/gunicorn.py), and an event stream would hold one of them for as long as a page stays
open, so 100 open pages would need 100 threads; the proxy and deploys (which wait for open
requests to end) would have to know about streams too. A poll is one short request that reads
the same Redis keys as the API's status read. Pages poll once a second while a job changes, less
often while it does not, not at all once it finished or while the tab is hidden
(static/jobs/pages.js); scripts/bench row 9 measures what 100 open pages cost web.

Jobs submitted from the pages need ids as API jobs do, derived from a token; the pages have none
(a session is not a token, and a token must never be kept for them), so they derive them from
the user's page identity (page_identity): the same name submitted again while it runs gives the
same job, as with the API. A job's reads and actions always check that it is the user's.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from celery import states
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from knox.models import AuthToken

from config.errors import DETAILS, RETRY_AFTER_SECONDS, unavailable_service
from jobs import ids, kind_forms, service, status, store
from jobs.base import KINDS
from jobs.models import Job, TokenName
from jobs.serializers import JobSubmitSerializer

PAGE_SIZE = 25
# The most jobs one live poll reads (the list shows PAGE_SIZE; a longer query is cut here).
LIVE_MAX_IDS = 50
# A job's result shown as JSON on its page up to this many characters (the API has all of it).
RESULT_JSON_LIMIT = 100_000
STATE_FILTERS = {
    "active": "queued or running",
    states.SUCCESS: "SUCCESS",
    states.FAILURE: "FAILURE",
    states.REVOKED: "REVOKED (cancelled)",
    status.EXPIRED: "EXPIRED",
}
TOKEN_NAME_MAX = TokenName._meta.get_field("name").max_length


def page_identity(user) -> str:
    """What the pages derive job ids and the owner key from, in place of an API token.

    Not a secret, and it need not be one: an id grants nothing (every read and action checks the
    job's user), and only the server knows JOB_ID_SECRET, which the derivation is keyed with. A
    knox token is hex, never "page-user:...", so no token's jobs share these ids."""
    return f"page-user:{user.pk}"


# --- how a job is shown ----------------------------------------------------------------------------

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
    body = status.describe(meta)
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
        "finished": state in status.FINISHED_STATES or state == status.EXPIRED,
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
        fields = [(key, value if isinstance(value, str)
                   else json.dumps(value, ensure_ascii=False, default=str)) for key, value in result.items()]
    return {"fields": fields, "json": pretty[:RESULT_JSON_LIMIT],
            "truncated": len(pretty) > RESULT_JSON_LIMIT}


# --- the list: filters and keyset pagination -------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_of(job: Job) -> str:
    """Where a page of the list starts or ends: the job's submission time (whole microseconds)
    and id, the list's order."""
    return f"{(job.submitted_at - EPOCH) // timedelta(microseconds=1)}.{job.id}"


def parse_cursor(value: str | None) -> tuple[datetime, str] | None:
    micros, _, job_id = (value or "").partition(".")
    if not (micros.isdigit() and ids.is_job_id(job_id)):
        return None
    return EPOCH + timedelta(microseconds=int(micros)), job_id


def state_filter(state: str) -> Q:
    """Jobs whose state is `state` (or "active": queued or running), from their records alone.
    A job's final state reaches its record about a second after it finished (jobs/archive.py):
    in that second it is listed as active, showing its real state."""
    expired_before = timezone.now() - timedelta(seconds=settings.CELERY_RESULT_EXPIRES)
    if state == "active":
        return Q(finished_at__isnull=True, cancelled_at__isnull=True)
    if state == status.EXPIRED:
        return Q(finished_at__lte=expired_before)
    live = Q(outcome__status=state, finished_at__gt=expired_before)
    if state == states.REVOKED:  # cancelled, and the worker has not said so yet
        live |= Q(finished_at__isnull=True, cancelled_at__isnull=False)
    return live


def keyset_page(jobs, older: tuple[datetime, str] | None, newer: tuple[datetime, str] | None,
                size: int = PAGE_SIZE) -> tuple[list[Job], bool, bool]:
    """(a page of jobs newest first, whether older ones exist, whether newer ones exist).

    Keyset pagination on (submitted_at, id): each page is one index range scan of
    (user, -submitted_at) from the cursor, however deep it is, and a job submitted meanwhile
    neither shifts nor repeats the rows of the pages after it (offsets would do both). The
    redundant `submitted_at <=` bound is what lets PostgreSQL start the scan at the cursor."""
    if newer is not None:
        at, job_id = newer
        rows = list(jobs.filter(submitted_at__gte=at).filter(Q(submitted_at__gt=at) | Q(id__gt=job_id))
                    .order_by("submitted_at", "id")[:size + 1])
        return rows[:size][::-1], True, len(rows) > size
    if older is not None:
        at, job_id = older
        jobs = jobs.filter(submitted_at__lte=at).filter(Q(submitted_at__lt=at) | Q(id__lt=job_id))
    rows = list(jobs.order_by("-submitted_at", "-id")[:size + 1])
    return rows[:size], len(rows) > size, older is not None


# --- views -----------------------------------------------------------------------------------------

def not_found(request, what: str = "No such job of yours.") -> HttpResponse:
    return render(request, "jobs/not_found.html", {"what": what}, status=404)


def own_job(request, job_id: str) -> Job | None:
    """The signed-in user's job of that id; another user's is as absent as one never submitted."""
    if not ids.is_job_id(job_id):
        return None
    return Job.objects.filter(pk=job_id, user=request.user).first()


def unavailable_message(exc: BaseException) -> str | None:
    """What to tell a person when a backing service refused (Redis full or away, PostgreSQL
    away): the API's 503 detail. None for any other error (a bug: let it raise)."""
    service_name = unavailable_service(exc)
    return DETAILS[service_name] if service_name else None


@login_required
@require_GET
def job_list(request):
    jobs = Job.objects.filter(user=request.user)
    state = request.GET.get("state", "")
    kind = request.GET.get("kind", "")
    if state in STATE_FILTERS:
        jobs = jobs.filter(state_filter(state))
    else:
        state = ""
    if kind in KINDS:
        jobs = jobs.filter(kind=kind)
    else:
        kind = ""
    page, has_older, has_newer = keyset_page(jobs, parse_cursor(request.GET.get("older")),
                                             parse_cursor(request.GET.get("newer")))
    metas = store.read_many([job.id for job in page])
    now = timezone.now()
    rows = [job_view(job, store.current_meta(job, meta), now) for job, meta in zip(page, metas, strict=True)]
    filters = {key: value for key, value in (("state", state), ("kind", kind)) if value}

    def link(**cursor) -> str:
        return "?" + urlencode({**filters, **cursor})

    return render(request, "jobs/job_list.html", {
        "nav": "jobs",
        "rows": rows,
        "state": state,
        "kind": kind,
        "filtered": bool(filters),
        "state_choices": STATE_FILTERS.items(),
        "kind_choices": sorted(KINDS),
        "older_url": link(older=cursor_of(page[-1])) if page and has_older else None,
        "newer_url": link(newer=cursor_of(page[0])) if page and has_newer else None,
        "newest_url": link() if has_newer else None,
    })


@login_required
@require_GET
def kind_list(request):
    kinds = [{"name": name, "description": kind.description, "url": reverse("page-submit", args=[name])}
             for name, kind in sorted(KINDS.items())]
    return render(request, "jobs/kinds.html", {"nav": "new", "kinds": kinds})


def bound_inputs(inputs, values: dict, errors: dict) -> list[dict]:
    bound = []
    for spec in inputs:
        field_errors = errors.get(spec.name, [])
        described = [f"{spec.html_id}-hint"] if spec.hint else []
        if field_errors:
            described.append(f"{spec.html_id}-error")
        bound.append({"spec": spec, "value": values.get(spec.name, spec.initial), "errors": field_errors,
                      "describedby": " ".join(described)})
    return bound


def split_errors(errors: dict, param_names: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """A JobSubmitSerializer's errors as (field -> messages, messages of the whole form); a
    params error names its parameter when it can, so it is shown at that field."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for key, value in errors.items():
        if key == "name":
            fields["name"] = kind_forms.flatten_errors(value)
        elif key == "params" and isinstance(value, dict):
            for param, messages_ in value.items():
                if param in param_names:
                    fields[param] = kind_forms.flatten_errors(messages_)
                else:
                    general += kind_forms.flatten_errors(messages_)
        else:
            general += kind_forms.flatten_errors(value)
    return fields, general


@login_required
@require_http_methods(["GET", "POST"])
def submit(request, kind):
    if kind not in KINDS:
        return not_found(request, "No such kind of job.")
    inputs = kind_forms.param_inputs(kind)
    values = {spec.name: spec.initial for spec in inputs}
    name, rerun = "", False
    errors: dict[str, list[str]] = {}
    general: list[str] = []
    unavailable = None
    if request.method == "POST":
        name, rerun = request.POST.get("name", "").strip(), "rerun" in request.POST
        values = {spec.name: (spec.input_name in request.POST) if spec.control == "checkbox"
                  else request.POST.get(spec.input_name, "") for spec in inputs}
        params, errors = kind_forms.params_from_form(kind, request.POST)
        if not errors:
            serializer = JobSubmitSerializer(data={"kind": kind, "params": params, "rerun": rerun,
                                                   **({"name": name} if name else {})})
            if not serializer.is_valid():
                errors, general = split_errors(serializer.errors, {spec.name for spec in inputs})
            else:
                data = serializer.validated_data
                try:
                    submission = service.submit(user=request.user, token=page_identity(request.user),
                                                kind=kind, params=data["params"], name=data.get("name"),
                                                rerun=rerun)
                except Exception as exc:
                    unavailable = unavailable_message(exc)
                    if unavailable is None:
                        raise
                else:
                    job = submission.job
                    if submission.created:
                        messages.success(request, f"Job {job.name} submitted.")
                    elif status.is_finished(submission.meta):
                        messages.info(request, f"A job named {job.name} already finished: here it is. "
                                               "Re-run it below, or submit with “run again” ticked.")
                    else:
                        messages.info(request, f"A job named {job.name} is already queued or running: "
                                               "here it is.")
                    return redirect("job-page", job.id)
    param_names = {spec.name for spec in inputs}
    summary = [(f"param-{key}" if key in param_names else "field-name", message)
               for key in ["name", *[spec.name for spec in inputs]] for message in errors.get(key, [])]
    status_code = 503 if unavailable else 400 if (errors or general) else 200
    response = render(request, "jobs/submit.html", {
        "nav": "new",
        "kind": KINDS[kind],
        "inputs": bound_inputs(inputs, values, errors),
        "name": name,
        "name_errors": errors.get("name", []),
        "rerun": rerun,
        "summary": summary,
        "general_errors": general,
        "error_count": len(summary) + len(general),
        "unavailable": unavailable,
    }, status=status_code)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@login_required
@require_GET
def job_detail(request, job_id):
    job = own_job(request, job_id)
    if job is None:
        return not_found(request)
    meta = store.current_meta(job, store.read_meta(job.id))
    view = job_view(job, meta)
    body = status.describe(meta)
    return render(request, "jobs/job_detail.html", {
        "nav": "jobs",
        "job": view,
        "params": result_view(job.params),
        "result": result_view(body["result"]) if view["state"] == states.SUCCESS else None,
        "can_cancel": not view["finished"],
        "can_rerun": view["finished"] and job.kind in KINDS,
    })


@login_required
@require_POST
def cancel(request, job_id):
    job = own_job(request, job_id)
    if job is None:
        return not_found(request)
    try:
        # As the API's DELETE: a job that already finished is left as it is.
        if status.is_finished(store.current_meta(job, store.read_meta(job.id))):
            messages.info(request, f"Job {job.name} had already finished: nothing to cancel.")
        else:
            service.cancel(job)
            messages.success(request, f"Job {job.name} cancelled.")
    except Exception as exc:
        problem = unavailable_message(exc)
        if problem is None:
            raise
        messages.error(request, f"Not cancelled: {problem}")
    return redirect("job-page", job.id)


@login_required
@require_POST
def rerun(request, job_id):
    """A new run of a finished job: same kind, name and parameters, submitted as from the form
    (a job submitted through the API gets its next run here under the page's ids)."""
    job = own_job(request, job_id)
    if job is None:
        return not_found(request)
    serializer = JobSubmitSerializer(data={"kind": job.kind, "name": job.name, "params": job.params,
                                           "rerun": True})
    if not serializer.is_valid():
        messages.error(request, "Not re-run: this job's kind or parameters are no longer accepted ("
                       + " ".join(kind_forms.flatten_errors(serializer.errors)) + ").")
        return redirect("job-page", job.id)
    try:
        if not status.is_finished(store.current_meta(job, store.read_meta(job.id))):
            messages.info(request, f"Job {job.name} has not finished yet: cancel it or wait.")
            return redirect("job-page", job.id)
        submission = service.submit(user=request.user, token=page_identity(request.user), kind=job.kind,
                                    params=serializer.validated_data["params"], name=job.name, rerun=True)
    except Exception as exc:
        problem = unavailable_message(exc)
        if problem is None:
            raise
        messages.error(request, f"Not re-run: {problem}")
        return redirect("job-page", job.id)
    if submission.created:
        messages.success(request, f"Run {submission.job.run} of {job.name} submitted.")
    else:
        messages.info(request, f"A run of {job.name} is already queued or running: here it is.")
    return redirect("job-page", submission.job.id)


def read_own_jobs(user, job_ids: list[str]) -> list[tuple[Job, dict | None]]:
    """(job, meta) of each of these ids that is the user's, in their order: their states and
    record copies in one MGET, and PostgreSQL only for the jobs Redis no longer holds (finished
    and archived) - the API's status read, for several jobs at once."""
    if not job_ids:
        return []
    raws = store.backend_client().mget(
        [key for job_id in job_ids for key in (store.meta_key(job_id), store.RECORD_PREFIX + job_id)])
    found: dict[str, tuple[Job, dict | None]] = {}
    elsewhere: dict[str, dict | None] = {}
    for i, job_id in enumerate(job_ids):
        meta, record = store.decode_meta(raws[2 * i]), store.decode_record(job_id, raws[2 * i + 1])
        if meta is not None and record is not None:
            if record.user_id == user.pk:
                found[job_id] = (record, meta)
        else:
            elsewhere[job_id] = meta
    if elsewhere:
        for job in Job.objects.filter(user=user, pk__in=list(elsewhere)):
            found[job.id] = (job, store.current_meta(job, elsewhere[job.id]))
    return [found[job_id] for job_id in job_ids if job_id in found]


@require_GET
def live(request):
    """The live state of the signed-in user's jobs named by ?id= (the pages poll it): JSON with
    an ETag, or 304 Not Modified when it matches the page's If-None-Match."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "signed_out", "detail": "Sign in again to follow your jobs."},
                            status=401)
    wanted = list(dict.fromkeys(job_id for job_id in request.GET.getlist("id") if ids.is_job_id(job_id)))
    body = json.dumps({"jobs": [live_state(job, meta) for job, meta in
                                read_own_jobs(request.user, wanted[:LIVE_MAX_IDS])]},
                      separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    response = (get_conditional_response(request, etag=etag)
                or HttpResponse(body, content_type="application/json"))
    response["ETag"] = etag
    # Stored by nobody, revalidated always (the page sends If-None-Match itself); per user.
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ["Cookie"])
    return response


@sensitive_variables("raw", "new_token")
@sensitive_post_parameters()
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """The user's API tokens: list by prefix, create (the token is shown in this answer only:
    nothing keeps it, the database has its digest), revoke."""
    new_token = None
    name, error = "", None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name:
            error = "Give the token a name, to tell it apart from your others later."
        elif len(name) > TOKEN_NAME_MAX:
            error = f"Use at most {TOKEN_NAME_MAX} characters."
        else:
            with transaction.atomic():
                record, raw = AuthToken.objects.create(user=request.user)
                TokenName.objects.create(token=record, name=name)
            new_token = {"name": name, "token": raw, "prefix": record.token_key}
            name = ""
    records = AuthToken.objects.filter(user=request.user).order_by("-created")
    names = dict(TokenName.objects.filter(token__user=request.user).values_list("token_id", "name"))
    rows = [{"name": names.get(record.digest, ""), "prefix": record.token_key,
             "created_text": format_time(record.created), "created_at": record.created.isoformat()}
            for record in records]
    response = render(request, "jobs/tokens.html", {
        "nav": "tokens", "tokens": rows, "new_token": new_token, "name": name, "error": error,
        "name_max": TOKEN_NAME_MAX, "api_url": request.build_absolute_uri(reverse("job-list")),
    }, status=400 if error else 200)
    # A new token is in this answer: no cache may keep it (nor the list: it is private anyway).
    patch_cache_control(response, no_store=True, private=True)
    return response


@login_required
@require_POST
def revoke_token(request):
    """Delete the user's token(s) with this prefix: every web process refuses it from the next
    request on (jobs/token_cache.py: the deletion writes its tombstone, or fails if Redis
    cannot take it). The prefix comes in the body, not the path: access logs show paths."""
    prefix = request.POST.get("prefix", "")
    tokens_ = AuthToken.objects.filter(user=request.user, token_key=prefix) if prefix.isalnum() else None
    digests = list(tokens_.values_list("digest", flat=True)) if tokens_ is not None else []
    if not digests:
        messages.error(request, "No token of yours starts with that.")
        return redirect("page-tokens")
    names = sorted(set(TokenName.objects.filter(token_id__in=digests).values_list("name", flat=True)))
    try:
        tokens_.delete()
    except Exception as exc:
        problem = unavailable_message(exc)
        if problem is None:
            raise
        messages.error(request, f"Not revoked: {problem}")
        return redirect("page-tokens")
    label = f"“{', '.join(names)}” ({prefix}…)" if names else f"{prefix}…"
    messages.success(request, f"Token {label} revoked: the API refuses it from now on.")
    return redirect("page-tokens")
