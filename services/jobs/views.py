"""The jobs API: submit, list, read, cancel. A status read costs one Redis round trip (and one
indexed query only for a job whose record copy in Redis is absent)."""

from django.http import Http404
from django.urls import get_script_prefix, reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import auth, ids, job_actions, job_store, presentation, token_cache
from jobs.models import Job
from jobs.serializers import (
    ErrorSerializer,
    JobSerializer,
    JobSubmitSerializer,
    JobSubmittedSerializer,
    WhoAmISerializer,
    validated_submission,
)


def job_body(request, job: Job, meta: dict | None) -> dict:
    return {
        "id": job.id,
        "name": job.name,
        "kind": job.kind,
        "run": job.run,
        "params": job.params,
        **presentation.describe(meta),
        "submitted_at": job.submitted_at.isoformat(),
        "url": job_url("job-detail", job.id),
        "page": job_url("job-page", job.id),
    }


_PLACEHOLDER = "job-id-placeholder"
_url_templates: dict[tuple[str, str], str] = {}


def job_url(view_name: str, job_id: str) -> str:
    """reverse(view_name, args=[job_id]) for a job id (hex digits and dashes, nothing to quote),
    from a template reversed once per view and script prefix: two reverse() calls were about 7 %
    of a status read's CPU in web (docs/benchmarks.md)."""
    key = (view_name, get_script_prefix())
    template = _url_templates.get(key)
    if template is None:
        template = _url_templates[key] = reverse(view_name, args=[_PLACEHOLDER])
    return template.replace(_PLACEHOLDER, job_id)


ERRORS = {
    400: OpenApiResponse(description="Invalid input; the body names each field at fault."),
    401: OpenApiResponse(ErrorSerializer, description="Missing or invalid token."),
    413: OpenApiResponse(description="Body larger than API_MAX_BODY_BYTES."),
    429: OpenApiResponse(
        description="The token is over its rate (API_SUBMIT_RATE, API_READ_RATE); "
        "retry after Retry-After seconds."
    ),
    503: OpenApiResponse(
        description="PostgreSQL or Redis is unavailable, or Redis is too full for "
        "a new job (job_store_full); retry later."
    ),
}


# Also the bare baseline of scripts/bench: the same token lookup as every job request, nothing else.
class WhoAmIView(APIView):
    @extend_schema(
        summary="The user your token belongs to",
        description="Checks a token: 200 with the user's name, 401 if the token is wrong.",
        responses={200: WhoAmISerializer, 401: ERRORS[401], 503: ERRORS[503]},
    )
    def get(self, request):
        return Response({"username": request.user.get_username()})


class JobListView(GenericAPIView):
    serializer_class = JobSubmitSerializer

    def get_queryset(self):
        return Job.objects.filter(user=self.request.user).order_by("-submitted_at", "-run")

    @extend_schema(
        summary="List your jobs, newest first", responses={200: JobSerializer(many=True), **ERRORS}
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        metas = job_store.read_many([job.id for job in page])
        return self.get_paginated_response(
            [
                job_body(request, job, job_store.current_meta(job, meta))
                for job, meta in zip(page, metas, strict=True)
            ]
        )

    @extend_schema(
        summary="Submit a job",
        request=JobSubmitSerializer,
        responses={202: JobSubmittedSerializer, 200: JobSubmittedSerializer, **ERRORS},
        description="202 for a new job; 200 with the existing job when the same name is "
        "pending or running (or finished, unless rerun is true).",
    )
    def post(self, request):
        data = validated_submission(request.data)
        submission = job_actions.submit(
            user=request.user,
            token=request.auth.raw,
            kind=data["kind"],
            params=data["params"],
            name=data.get("name"),
            rerun=data["rerun"],
        )
        body = {**job_body(request, submission.job, submission.meta), "created": submission.created}
        response = Response(body, status=http.HTTP_202_ACCEPTED if submission.created else http.HTTP_200_OK)
        response["Location"] = body["url"]
        return response


class JobDetailView(GenericAPIView):
    serializer_class = JobSerializer

    def get_object(self) -> Job:
        job_id = self.kwargs["job_id"]
        # Another user's job is indistinguishable from one that does not exist.
        if not ids.is_job_id(job_id):
            raise Http404
        try:
            return Job.objects.get(pk=job_id, user=self.request.user)
        except Job.DoesNotExist:
            raise Http404 from None

    def initial(self, request, *args, **kwargs):
        # A status read is one round trip to Redis, token check included: the token's cache
        # entry, the job's state and its record copy in one MGET. Without a cache entry (first
        # request of the token, or a tombstone), knox checks the token as for any request.
        self.prefetched = None
        job_id = kwargs.get("job_id", "")
        raw = auth.raw_token_of(request)
        if request.method == "GET" and raw and ids.is_job_id(job_id) and token_cache.cache_seconds():
            meta, job, (entry,) = job_store.read_status(job_id, auth.cache_key(raw))
            user = token_cache.user_of(entry)
            if user is not None:
                request.user, request.auth = user, auth.ApiToken(raw=raw)
                self.prefetched = (meta, job)
        super().initial(request, *args, **kwargs)

    @extend_schema(
        summary="Read a job's state, progress and result",
        responses={
            200: JobSerializer,
            404: ErrorSerializer,
            410: OpenApiResponse(JobSerializer, description="The result expired."),
            **ERRORS,
        },
    )
    def get(self, request, job_id):
        # The state and the record copy written at submission (prefetched above with the token
        # check); the record from PostgreSQL (one indexed query) only when Redis no longer
        # holds the job: its copy is gone, or its state is (then the record holds the outcome).
        if not ids.is_job_id(job_id):
            raise Http404
        if self.prefetched is not None:
            meta, job = self.prefetched
        else:
            meta, job, _ = job_store.read_status(job_id)
        if job is None or meta is None:
            job = self.get_object()
            meta = job_store.current_meta(job, meta)
        elif job.user_id != request.user.pk:
            raise Http404
        return Response(job_body(request, job, meta), status=http.HTTP_200_OK if meta else http.HTTP_410_GONE)

    @extend_schema(
        summary="Cancel a job",
        description="A queued job never runs; a running one is terminated. 409 if it already finished.",
        responses={202: JobSerializer, 404: ErrorSerializer, 409: JobSerializer, **ERRORS},
    )
    def delete(self, request, job_id):
        job = self.get_object()
        meta = job_store.current_meta(job, job_store.read_meta(job.id))
        if presentation.is_finished(meta):
            return Response(job_body(request, job, meta), status=http.HTTP_409_CONFLICT)
        return Response(job_body(request, job, job_actions.cancel(job)), status=http.HTTP_202_ACCEPTED)
