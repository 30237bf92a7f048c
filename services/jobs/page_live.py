"""Live updates of the pages: GET /jobs/live/?id=... answers the state of the user's listed jobs,
with an ETag, and 304 when nothing changed (why polling and not events: jobs/pages.py)."""

import hashlib
import json

from django.http import HttpResponse, JsonResponse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET

from jobs import ids, job_store
from jobs.job_display import live_state
from jobs.models import Job

# The most jobs one live poll reads (the list shows PAGE_SIZE; a longer query is cut here).
LIVE_MAX_IDS = 50


def read_own_jobs(user, job_ids: list[str]) -> list[tuple[Job, dict | None]]:
    """(job, meta) of each of these ids that is the user's, in their order: their states and
    record copies in one MGET, and PostgreSQL only for the jobs Redis no longer holds (finished
    and archived) - the API's status read, for several jobs at once."""
    if not job_ids:
        return []
    raws = job_store.backend_client().mget(
        [key for job_id in job_ids for key in (job_store.meta_key(job_id), job_store.RECORD_PREFIX + job_id)]
    )
    found: dict[str, tuple[Job, dict | None]] = {}
    elsewhere: dict[str, dict | None] = {}
    for i, job_id in enumerate(job_ids):
        meta, record = job_store.decode_meta(raws[2 * i]), job_store.decode_record(job_id, raws[2 * i + 1])
        if meta is not None and record is not None:
            if record.user_id == user.pk:
                found[job_id] = (record, meta)
        else:
            elsewhere[job_id] = meta
    if elsewhere:
        for job in Job.objects.filter(user=user, pk__in=list(elsewhere)):
            found[job.id] = (job, job_store.current_meta(job, elsewhere[job.id]))
    return [found[job_id] for job_id in job_ids if job_id in found]


@require_GET
def live(request):
    """The live state of the signed-in user's jobs named by ?id= (the pages poll it): JSON with
    an ETag, or 304 Not Modified when it matches the page's If-None-Match."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"error": "signed_out", "detail": "Sign in again to follow your jobs."}, status=401
        )
    wanted = list(dict.fromkeys(job_id for job_id in request.GET.getlist("id") if ids.is_job_id(job_id)))
    body = json.dumps(
        {"jobs": [live_state(job, meta) for job, meta in read_own_jobs(request.user, wanted[:LIVE_MAX_IDS])]},
        separators=(",", ":"),
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    response = get_conditional_response(request, etag=etag) or HttpResponse(
        body, content_type="application/json"
    )
    response["ETag"] = etag
    # Stored by nobody, revalidated always (the page sends If-None-Match itself); per user.
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ["Cookie"])
    return response
