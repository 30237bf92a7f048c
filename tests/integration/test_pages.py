"""integration: the pages people use (jobs/pages.py), on the real Redis 5.0, PostgreSQL and worker.

Sign-in with the session and CSRF, the submit form of each kind and its errors at the field, a
full Redis shown as a message, a job's page, cancel and re-run, the live poll with its ETag and
304, the list's filters and keyset pagination over thousands of jobs, and self-service tokens
that the API takes and then refuses at once.
"""

import io
import re
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs import job_listing, job_store, pages, redis_memory
from jobs.base import KINDS, JobKind
from jobs.models import Job, TokenName
from jobs.serializers import JobSubmitSerializer
from tests.integration.helpers import redis_client
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db

PASSWORD = "a long pass phrase for the pages"


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    # The image collects static files at build time (whitenoise's manifest); here there is no
    # manifest, so the templates' {% static %} links use the plain storage.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def person(username: str) -> Client:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def carol(worker):
    return person("carol")


@pytest.fixture
def dave(worker):
    return person("dave")


def submit_form(client, kind: str, **fields):
    data = {f"params.{key}": value for key, value in fields.pop("params", {}).items()}
    return client.post(f"/jobs/new/{kind}/", {**data, **fields})


def job_id_of(response) -> str:
    assert response.status_code == 302, (response.status_code, response.content[:2000])
    match = re.fullmatch(r"/jobs/([0-9a-f-]{36})/", response["Location"])
    assert match, response["Location"]
    return match.group(1)


def live(client, *job_ids, etag: str | None = None):
    headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
    return client.get("/jobs/live/", {"id": list(job_ids)}, **headers)


def live_state(client, job_id: str) -> dict:
    response = live(client, job_id)
    assert response.status_code == 200, response.content
    [state] = response.json()["jobs"]
    return state


def wait_for(client, job_id: str, *states: str, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (s := live_state(client, job_id))["state"] in states and s,
        timeout=timeout,
        interval=0.1,
        what=f"job {job_id} to reach {'/'.join(states)}",
    )


# --- sign-in -----------------------------------------------------------------------------------


def test_pages_need_a_session_and_forms_need_csrf(worker):
    anonymous = Client(enforce_csrf_checks=True)
    for path in ("/jobs/", "/jobs/new/", "/jobs/new/noop/", "/tokens/", f"/jobs/{uuid.uuid4()}/"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={path}", path
    signed_out = anonymous.get("/jobs/live/", {"id": str(uuid.uuid4())})
    assert signed_out.status_code == 401 and signed_out.json()["error"] == "signed_out"

    # A password set with the command (read from stdin), then a real sign-in through the form.
    stdin = sys.stdin
    sys.stdin = io.StringIO(PASSWORD + "\n")
    try:
        out = io.StringIO()
        call_command("create_api_user", "erin", "--password-stdin", stdout=out)
    finally:
        sys.stdin = stdin
    assert len(out.getvalue().strip()) == 64  # a token too, as before

    form = anonymous.get("/accounts/login/?next=/tokens/")
    assert form.status_code == 200 and b'autocomplete="current-password"' in form.content
    without_csrf = anonymous.post("/accounts/login/", {"username": "erin", "password": PASSWORD})
    assert without_csrf.status_code == 403
    csrf = anonymous.cookies["csrftoken"].value
    wrong = anonymous.post(
        "/accounts/login/", {"username": "erin", "password": "nope", "csrfmiddlewaretoken": csrf}
    )
    assert wrong.status_code == 200 and b'role="alert"' in wrong.content
    signed_in = anonymous.post(
        "/accounts/login/",
        {"username": "erin", "password": PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/tokens/"},
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/tokens/"
    page = anonymous.get("/jobs/")
    assert page.status_code == 200 and b"Signed in as <strong>erin</strong>" in page.content

    # A form posted without its CSRF token is refused, signed in or not.
    assert anonymous.post("/jobs/new/noop/", {}).status_code == 403
    assert anonymous.post("/accounts/logout/", {}).status_code == 403
    out_ = anonymous.post("/accounts/logout/", {"csrfmiddlewaretoken": anonymous.cookies["csrftoken"].value})
    assert out_.status_code == 302
    assert anonymous.get("/jobs/").status_code == 302


def test_a_weak_password_is_refused_by_the_command(worker):
    stdin = sys.stdin
    sys.stdin = io.StringIO("12345\n")
    try:
        with pytest.raises(Exception, match="Password refused"):
            call_command("create_api_user", "frank", "--password-stdin", stdout=io.StringIO())
    finally:
        sys.stdin = stdin
    assert not get_user_model().objects.filter(username="frank").exists()


# --- the submit form ---------------------------------------------------------------------------


def test_the_form_is_built_from_the_kinds_serializer(carol):
    kinds = carol.get("/jobs/new/")
    for kind in KINDS:
        assert f'href="/jobs/new/{kind}/"'.encode() in kinds.content
    form = carol.get("/jobs/new/model_inference/").content.decode()
    assert re.search(r'<textarea id="param-text" name="params.text"[^>]* maxlength="2000" required', form)
    assert re.search(
        r'<input type="number" id="param-steps" name="params.steps" value="5"'
        r'[^>]* min="1" max="100"',
        form,
    )
    assert re.search(r'<input type="number" id="param-step_seconds"[^>]* step="any"', form)
    assert '<label for="param-steps">Steps <span class="optional">(optional)</span></label>' in form
    assert carol.get("/jobs/new/no_such_kind/").status_code == 404


class GreetParams(serializers.Serializer):
    who = serializers.CharField(max_length=20)
    loud = serializers.BooleanField(default=False)
    times = serializers.IntegerField(min_value=1, max_value=3, default=1)


def test_a_new_kind_gets_its_form_and_its_errors_with_no_template(carol, monkeypatch):
    monkeypatch.setitem(
        KINDS, "greet", JobKind("greet", task=None, params=GreetParams, description="Says hello.")
    )
    # A real kind is registered before the API's serializer is defined; this one comes later (DRF
    # builds each serializer's fields again from their constructor arguments).
    monkeypatch.setitem(JobSubmitSerializer._declared_fields["kind"]._kwargs, "choices", sorted(KINDS))
    form = carol.get("/jobs/new/greet/").content.decode()
    assert "Says hello." in form
    assert 'id="param-who" name="params.who"' in form and 'type="checkbox" id="param-loud"' in form
    response = submit_form(carol, "greet", params={"who": "x" * 21, "times": "9"})
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(r'<p class="field-error" id="param-who-error">.*20 characters', page)
    assert re.search(r'<p class="field-error" id="param-times-error">.*less than or equal to 3', page)
    assert 'aria-describedby="param-times-hint param-times-error" aria-invalid="true"' in page
    assert 'value="9"' in page  # what was typed is kept


def test_validation_errors_are_shown_at_the_field(carol):
    jobs_before = Job.objects.count()
    cases = [
        ("model_inference", {"params": {"steps": "0"}}, ["text", "steps"]),
        ("model_inference", {"params": {"text": "x", "steps": "ten"}}, ["steps"]),
        ("sum_number", {"params": {"x": "5", "y": "1"}}, ["y"]),
        ("noop", {"name": "no spaces allowed"}, ["name"]),
    ]
    for kind, fields, at_fault in cases:
        response = submit_form(carol, kind, **fields)
        assert response.status_code == 400, (kind, fields)
        page = response.content.decode()
        assert 'role="alert"' in page and "Not submitted" in page
        for name in at_fault:
            html_id = "field-name" if name == "name" else f"param-{name}"
            assert f'id="{html_id}-error"' in page, (kind, fields, name)
            assert f'href="#{html_id}"' in page  # the summary links to the field
    assert Job.objects.count() == jobs_before


def test_a_full_job_store_is_a_message_not_a_crash(carol, settings):
    # As tests/integration/test_job_store_full.py: Redis above the admission limit.
    client = redis_client(0)
    settings.JOB_STORE_ADMIT_PERCENT = 10
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) * 3)
    time.sleep(redis_memory.MEMORY_READ_EVERY + 0.1)
    try:
        jobs_before = Job.objects.count()
        response = submit_form(carol, "noop", name="while-full")
        assert response.status_code == 503 and response["Retry-After"]
        page = response.content.decode()
        assert "The job store (Redis) is full" in page and 'role="alert"' in page
        assert 'value="while-full"' in page
        assert Job.objects.count() == jobs_before
    finally:
        client.config_set("maxmemory", 0)
        time.sleep(redis_memory.MEMORY_READ_EVERY + 0.1)
    assert submit_form(carol, "noop", name="while-full").status_code == 302


# --- a job's page, the list, cancel, re-run ------------------------------------------------------


def test_submit_watch_and_rerun_from_the_pages(carol):
    job_id = job_id_of(
        submit_form(
            carol,
            "model_inference",
            name="pages-demo",
            params={"text": "hello", "steps": "3", "step_seconds": "0.3"},
        )
    )
    job = Job.objects.get(pk=job_id)
    assert (job.user, job.kind, job.name, job.run) == (carol.user, "model_inference", "pages-demo", 1)
    assert job.params == {"text": "hello", "steps": 3, "step_seconds": 0.3}
    assert job.owner == pages.job_actions.owner_for(pages.page_identity(carol.user))

    seen = set()
    wait_until(
        lambda: seen.add((s := live_state(carol, job_id))["state"]) or s["state"] == "SUCCESS",
        timeout=60,
        interval=0.05,
        what="SUCCESS",
    )
    assert "PROGRESS" in seen
    page = carol.get(f"/jobs/{job_id}/").content.decode()
    assert 'data-field="state">SUCCESS<' in page and 'value="100"' in page
    assert "<dt>label</dt>" in page and "<summary>Result as JSON</summary>" in page
    assert "Re-run this job" in page and "Cancel this job" not in page
    listing = carol.get("/jobs/").content.decode()
    assert f'data-job-id="{job_id}" data-finished="true"' in listing and "pages-demo" in listing

    # The same name again while it is finished: the same job, with a hint.
    again = submit_form(carol, "model_inference", name="pages-demo", params={"text": "hello"})
    assert job_id_of(again) == job_id
    rerun = carol.post(f"/jobs/{job_id}/rerun/")
    second = job_id_of(rerun)
    assert second != job_id and Job.objects.get(pk=second).run == 2
    assert Job.objects.get(pk=second).params == job.params
    assert wait_for(carol, second, "SUCCESS")["percent"] == 100


def test_cancel_a_running_job_from_its_page(carol):
    job_id = job_id_of(
        submit_form(carol, "model_inference", params={"text": "long", "steps": "60", "step_seconds": "0.5"})
    )
    wait_for(carol, job_id, "PROGRESS")
    assert "Cancel this job" in carol.get(f"/jobs/{job_id}/").content.decode()
    assert carol.post(f"/jobs/{job_id}/cancel/")["Location"] == f"/jobs/{job_id}/"
    assert wait_for(carol, job_id, "REVOKED", timeout=30)["error"] == "The job was cancelled."
    page = carol.get(f"/jobs/{job_id}/").content.decode()
    assert "The job was cancelled." in page and "Re-run this job" in page
    # Cancelling again: it already finished.
    carol.post(f"/jobs/{job_id}/cancel/")
    assert "had already finished" in carol.get(f"/jobs/{job_id}/").content.decode()


def test_a_failure_shows_its_safe_error(carol):
    job_id = job_id_of(submit_form(carol, "fail", params={"message": "The model file is missing."}))
    assert wait_for(carol, job_id, "FAILURE")["error"] == "The model file is missing."
    page = carol.get(f"/jobs/{job_id}/").content.decode()
    assert '<h2 id="error-heading">Error</h2>' in page and "The model file is missing." in page
    assert "Traceback" not in page and "JobError" not in page
    assert "Re-run this job" in page


def test_another_users_job_is_not_found_anywhere(carol, dave):
    job_id = job_id_of(submit_form(carol, "noop"))
    for response in (
        dave.get(f"/jobs/{job_id}/"),
        dave.post(f"/jobs/{job_id}/cancel/"),
        dave.post(f"/jobs/{job_id}/rerun/"),
        dave.get("/jobs/not-an-id/"),
    ):
        assert response.status_code == 404 and b"Not found" in response.content
    assert live(dave, job_id).json() == {"jobs": []}
    assert job_id.encode() not in dave.get("/jobs/").content


def test_an_api_job_is_shown_and_rerun_on_the_pages(carol):
    _, token = AuthToken.objects.create(user=carol.user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    job_id = api.post("/api/jobs/", {"kind": "noop", "name": "from-api"}, format="json").json()["id"]
    wait_for(carol, job_id, "SUCCESS")
    assert "from-api" in carol.get("/jobs/").content.decode()
    # Its re-run from the page is the page's first run of that name (the page has no token).
    rerun = job_id_of(carol.post(f"/jobs/{job_id}/rerun/"))
    assert Job.objects.get(pk=rerun).name == "from-api" and rerun != job_id
    wait_for(carol, rerun, "SUCCESS")


# --- live updates -----------------------------------------------------------------------------------


def test_live_poll_answers_304_while_nothing_changes(carol, django_assert_max_num_queries):
    job_id = job_id_of(submit_form(carol, "noop"))
    wait_for(carol, job_id, "SUCCESS")
    first = live(carol, job_id)
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('"')
    assert "no-cache" in first["Cache-Control"] and "private" in first["Cache-Control"]
    assert "Cookie" in first["Vary"]
    unchanged = live(carol, job_id, etag=etag)
    assert unchanged.status_code == 304 and unchanged["ETag"] == etag and not unchanged.content
    # A poll of a job Redis holds costs one query (the user of the session; the session itself
    # comes from the cache, the job's state and record copy from Redis).
    with django_assert_max_num_queries(1):
        assert live(carol, job_id, etag=etag).status_code == 304
    # Unknown, malformed and repeated ids are left out; another job changes the answer.
    other = job_id_of(submit_form(carol, "noop"))
    both = live(carol, job_id, other, job_id, "junk", str(uuid.uuid4()), etag=etag)
    assert both.status_code == 200 and [j["id"] for j in both.json()["jobs"]] == [job_id, other]


@pytest.mark.django_db(transaction=True)  # committed records: the worker's archiver must see them
def test_live_poll_reads_archived_jobs_from_postgresql(carol):
    job_id = job_id_of(submit_form(carol, "noop"))
    wait_for(carol, job_id, "SUCCESS")
    wait_until(lambda: Job.objects.get(pk=job_id).outcome, timeout=30, interval=0.1, what="archived")
    job_store.backend_client().delete(job_store.meta_key(job_id), job_store.RECORD_PREFIX + job_id)
    assert live_state(carol, job_id)["state"] == "SUCCESS"
    assert 'data-field="state">SUCCESS<' in carol.get(f"/jobs/{job_id}/").content.decode()


# --- the list: filters and pagination over thousands of jobs ------------------------------------------


def make_jobs(user, count: int, start) -> list[Job]:
    """Job records as the archive leaves them, several per instant (ties in submitted_at)."""
    kinds = ["noop", "sum_number", "model_inference"]
    outcomes = ["SUCCESS", "FAILURE", "REVOKED", None]
    jobs = []
    for i in range(count):
        outcome = outcomes[i % 4]
        submitted = start + timedelta(seconds=i // 3)
        jobs.append(
            Job(
                id=str(uuid.uuid4()),
                owner=f"bulk-{user.pk}",
                user=user,
                name=f"bulk-{i}",
                run=1,
                kind=kinds[i % 3],
                params={},
                submitted_at=submitted,
                outcome={"status": outcome, "result": None, "date_done": submitted.isoformat()}
                if outcome
                else None,
                finished_at=submitted if outcome else None,
            )
        )
    Job.objects.bulk_create(jobs, batch_size=1000)
    return jobs


def walk(client, query: str = "") -> list[str]:
    seen, url = [], f"/jobs/?{query}"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        page = response.content.decode()
        seen += re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', page)
        match = re.search(r'<a href="([^"]+)" rel="next">Older jobs</a>', page)
        url = "/jobs/" + match.group(1).replace("&amp;", "&") if match else None
    return seen


def test_keyset_pages_hold_with_thousands_of_jobs(carol, dave):
    start = timezone.now() - timedelta(hours=2)
    mine = make_jobs(carol.user, 3000, start)
    make_jobs(dave.user, 500, start)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    expected = [job.id for job in sorted(mine, key=lambda j: (j.submitted_at, j.id), reverse=True)]

    first = carol.get("/jobs/").content.decode()
    assert len(re.findall(r"<tr data-job-id=", first)) == job_listing.PAGE_SIZE
    assert "Newer jobs" not in first and "Older jobs" in first
    assert walk(carol) == expected

    # Filters: by kind, by state, both; each walk is the matching jobs, in order, once each.
    by_id = {job.id: job for job in mine}
    assert walk(carol, "kind=sum_number") == [i for i in expected if by_id[i].kind == "sum_number"]
    assert walk(carol, "state=FAILURE&kind=noop") == [
        i for i in expected if by_id[i].kind == "noop" and (by_id[i].outcome or {}).get("status") == "FAILURE"
    ]
    assert walk(carol, "state=active") == [i for i in expected if by_id[i].outcome is None]

    # A job submitted while someone pages: the older pages neither shift nor repeat a row.
    second_page_url = re.search(r'<a href="([^"]+)" rel="next">', first).group(1).replace("&amp;", "&")
    job_id_of(submit_form(carol, "noop"))
    second = carol.get("/jobs/" + second_page_url).content.decode()
    assert re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', second) == expected[25:50]
    newer = re.search(r'<a href="([^"]+)" rel="prev">Newer jobs</a>', second).group(1).replace("&amp;", "&")
    assert (
        re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', carol.get("/jobs/" + newer).content.decode())
        == expected[:25]
    )

    # Deep in the list, a page is still one index range scan from the cursor.
    deep = Job.objects.get(pk=expected[2500])
    older = job_listing.parse_cursor(job_listing.cursor_of(deep))
    query = job_listing.keyset_page(Job.objects.filter(user=carol.user), older, None)
    with connection.cursor() as cursor:
        at, job_id = older
        sql, params = (
            Job.objects.filter(user=carol.user, submitted_at__lte=at)
            .filter(job_listing.Q(submitted_at__lt=at) | job_listing.Q(id__lt=job_id))
            .order_by("-submitted_at", "-id")[:26]
            .query.sql_with_params()
        )
        cursor.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "job_user_recent" in plan and "Seq Scan" not in plan, plan
    rows_read = max(int(n) for n in re.findall(r"Index Scan.*?actual time=\S+ rows=(\d+)", plan))
    assert rows_read <= 60, plan  # a page and the ties at its edge, not the 2,500 rows before it
    assert [job.id for job in query[0]] == expected[2501:2526]


# --- tokens -------------------------------------------------------------------------------------------


def test_a_token_made_on_the_page_works_until_revoked_there(carol, settings):
    settings.API_TOKEN_CACHE_SECONDS = 30  # the cache on: revocation must still act at once
    created = carol.post("/tokens/", {"name": "nightly import"})
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    page = created.content.decode()
    token = re.search(r'<input type="text" id="new-token" value="([0-9a-f]{64})"', page).group(1)
    assert "shown only this once" in page
    record = AuthToken.objects.get(user=carol.user)
    assert TokenName.objects.get(token=record).name == "nightly import"
    # Only the digest and the prefix are kept; the list shows the prefix, never the token.
    listing = carol.get("/tokens/").content.decode()
    assert token not in listing and f"{record.token_key}…" in listing and "nightly import" in listing

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/whoami/").json() == {"username": "carol"}
    assert api.get("/api/whoami/").status_code == 200  # now from the token cache

    assert carol.post("/tokens/", {"name": ""}).status_code == 400
    revoked = carol.post("/tokens/revoke/", {"prefix": record.token_key}, follow=True)
    assert "“nightly import”" in revoked.content.decode() and "revoked" in revoked.content.decode()
    assert api.get("/api/whoami/").status_code == 401
    assert not AuthToken.objects.filter(user=carol.user).exists() and not TokenName.objects.exists()


def test_a_token_can_only_be_revoked_by_its_owner(carol, dave):
    token_record, _ = AuthToken.objects.create(user=carol.user)
    response = dave.post("/tokens/revoke/", {"prefix": token_record.token_key}, follow=True)
    assert "No token of yours" in response.content.decode()
    assert AuthToken.objects.filter(pk=token_record.pk).exists()
    assert dave.get("/tokens/revoke/").status_code == 405
