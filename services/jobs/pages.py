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

from urllib.parse import urlencode

from celery import states
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from web.errors import RETRY_AFTER_SECONDS

from jobs import ids, job_actions, job_store, kind_forms, presentation
from jobs.base import KINDS
from jobs.job_display import job_view, result_view, unavailable_message
from jobs.job_listing import STATE_FILTERS, cursor_of, keyset_page, parse_cursor, state_filter
from jobs.models import Job
from jobs.serializers import JobSubmitSerializer


def page_identity(user) -> str:
    """What the pages derive job ids and the owner key from, in place of an API token.

    Not a secret, and it need not be one: an id grants nothing (every read and action checks the
    job's user), and only the server knows JOB_ID_SECRET, which the derivation is keyed with. A
    knox token is hex, never "page-user:...", so no token's jobs share these ids."""
    return f"page-user:{user.pk}"


def not_found(request, what: str = "No such job of yours.") -> HttpResponse:
    return render(request, "jobs/not_found.html", {"what": what}, status=404)


def own_job(request, job_id: str) -> Job | None:
    """The signed-in user's job of that id; another user's is as absent as one never submitted."""
    if not ids.is_job_id(job_id):
        return None
    return Job.objects.filter(pk=job_id, user=request.user).first()


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
    page, has_older, has_newer = keyset_page(
        jobs, parse_cursor(request.GET.get("older")), parse_cursor(request.GET.get("newer"))
    )
    metas = job_store.read_many([job.id for job in page])
    now = timezone.now()
    rows = [
        job_view(job, job_store.current_meta(job, meta), now) for job, meta in zip(page, metas, strict=True)
    ]
    filters = {key: value for key, value in (("state", state), ("kind", kind)) if value}

    def link(**cursor) -> str:
        return "?" + urlencode({**filters, **cursor})

    return render(
        request,
        "jobs/job_list.html",
        {
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
        },
    )


@login_required
@require_GET
def kind_list(request):
    kinds = [
        {"name": name, "description": kind.description, "url": reverse("page-submit", args=[name])}
        for name, kind in sorted(KINDS.items())
    ]
    return render(request, "jobs/kinds.html", {"nav": "new", "kinds": kinds})


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
        values = {
            spec.name: (spec.input_name in request.POST)
            if spec.control == "checkbox"
            else request.POST.get(spec.input_name, "")
            for spec in inputs
        }
        params, errors = kind_forms.params_from_form(kind, request.POST)
        if not errors:
            serializer = JobSubmitSerializer(
                data={"kind": kind, "params": params, "rerun": rerun, **({"name": name} if name else {})}
            )
            if not serializer.is_valid():
                errors, general = kind_forms.split_errors(serializer.errors, {spec.name for spec in inputs})
            else:
                data = serializer.validated_data
                try:
                    submission = job_actions.submit(
                        user=request.user,
                        token=page_identity(request.user),
                        kind=kind,
                        params=data["params"],
                        name=data.get("name"),
                        rerun=rerun,
                    )
                except Exception as exc:
                    unavailable = unavailable_message(exc)
                    if unavailable is None:
                        raise
                else:
                    job = submission.job
                    if submission.created:
                        messages.success(request, f"Job {job.name} submitted.")
                    elif presentation.is_finished(submission.meta):
                        messages.info(
                            request,
                            f"A job named {job.name} already finished: here it is. "
                            "Re-run it below, or submit with “run again” ticked.",
                        )
                    else:
                        messages.info(
                            request, f"A job named {job.name} is already queued or running: here it is."
                        )
                    return redirect("job-page", job.id)
    param_names = {spec.name for spec in inputs}
    summary = [
        (f"param-{key}" if key in param_names else "field-name", message)
        for key in ["name", *[spec.name for spec in inputs]]
        for message in errors.get(key, [])
    ]
    status_code = 503 if unavailable else 400 if (errors or general) else 200
    response = render(
        request,
        "jobs/submit.html",
        {
            "nav": "new",
            "kind": KINDS[kind],
            "inputs": kind_forms.bound_inputs(inputs, values, errors),
            "name": name,
            "name_errors": errors.get("name", []),
            "rerun": rerun,
            "summary": summary,
            "general_errors": general,
            "error_count": len(summary) + len(general),
            "unavailable": unavailable,
        },
        status=status_code,
    )
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@login_required
@require_GET
def job_detail(request, job_id):
    job = own_job(request, job_id)
    if job is None:
        return not_found(request)
    meta = job_store.current_meta(job, job_store.read_meta(job.id))
    view = job_view(job, meta)
    body = presentation.describe(meta)
    return render(
        request,
        "jobs/job_detail.html",
        {
            "nav": "jobs",
            "job": view,
            "params": result_view(job.params),
            "result": result_view(body["result"]) if view["state"] == states.SUCCESS else None,
            "can_cancel": not view["finished"],
            "can_rerun": view["finished"] and job.kind in KINDS,
        },
    )


@login_required
@require_POST
def cancel(request, job_id):
    job = own_job(request, job_id)
    if job is None:
        return not_found(request)
    try:
        # As the API's DELETE: a job that already finished is left as it is.
        if presentation.is_finished(job_store.current_meta(job, job_store.read_meta(job.id))):
            messages.info(request, f"Job {job.name} had already finished: nothing to cancel.")
        else:
            job_actions.cancel(job)
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
    serializer = JobSubmitSerializer(
        data={"kind": job.kind, "name": job.name, "params": job.params, "rerun": True}
    )
    if not serializer.is_valid():
        messages.error(
            request,
            "Not re-run: this job's kind or parameters are no longer accepted ("
            + " ".join(kind_forms.flatten_errors(serializer.errors))
            + ").",
        )
        return redirect("job-page", job.id)
    try:
        if not presentation.is_finished(job_store.current_meta(job, job_store.read_meta(job.id))):
            messages.info(request, f"Job {job.name} has not finished yet: cancel it or wait.")
            return redirect("job-page", job.id)
        submission = job_actions.submit(
            user=request.user,
            token=page_identity(request.user),
            kind=job.kind,
            params=serializer.validated_data["params"],
            name=job.name,
            rerun=True,
        )
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
