"""The jobs API on the running compose stack, as clients see it: progress, deduplication,
several web replicas and a one-off command reading the same job, cancellation, error answers,
the raw token kept out of every store (the pages, in a browser: tests/e2e/test_pages_browser.py).

Every HTTP status this module sees is recorded; the last test asserts none was a 5xx.
"""

import hashlib
import json
import re
import time
import uuid

import pytest
import requests

from tests.e2e.helpers import (
    FINISHED,
    container_numbers,
    contains_secret,
    count_lines,
    flower,
    hostnames,
    queued_messages,
    redis_everything,
    unique,
    waiting_messages,
)
from tests.support.stack import Api
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

RUNNING = ("PENDING", "STARTED", "PROGRESS")
INFERENCE_LABELS = ("negative", "neutral", "positive")  # jobs.tasks.INFERENCE_LABELS

# (method, where, status) of every HTTP answer this module received.
SEEN: list[tuple[str, str, int]] = []


def _record(response, *args, **kwargs):
    SEEN.append((response.request.method, response.request.path_url, response.status_code))


def client(stack, token: str | None) -> Api:
    api = Api(stack.url(""), token)
    api.session.hooks["response"].append(_record)
    return api


@pytest.fixture(scope="module", autouse=True)
def module_started(stack) -> int:
    """When this module began (Unix time): web's access log from then on is checked at the end."""
    return int(time.time()) - 1


@pytest.fixture(scope="module")
def alice(stack, token) -> Api:
    return client(stack, token)


@pytest.fixture(scope="module")
def bob_token(stack) -> str:
    return stack.create_token("e2e-bob")


@pytest.fixture(scope="module")
def bob(stack, bob_token) -> Api:
    return client(stack, bob_token)


@pytest.fixture(scope="module")
def anonymous(stack) -> Api:
    return client(stack, None)


def expected_inference(text: str, steps: int) -> dict:
    """What jobs.tasks.model_inference returns for text (computed here independently)."""
    digest = hashlib.sha256(text.encode()).digest()
    return {"label": INFERENCE_LABELS[digest[0] % 3], "score": round(digest[1] / 255, 3), "steps": steps}


def is_json(response: requests.Response) -> bool:
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return False
    response.json()
    return True


def delete(api: Api, job_id: str) -> requests.Response:
    return api.request("DELETE", f"/api/jobs/{job_id}/")


# --- 1. progress ---------------------------------------------------------------------------------


def test_progress_goes_up_then_success(alice):
    text, steps = "progress goes up", 6
    submitted = alice.submit(
        "model_inference", {"text": text, "steps": steps, "step_seconds": 1.0}, name=unique("progress")
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    observed: list[int] = []

    def finished():
        body = alice.job(job_id).json()
        if body["state"] == "PROGRESS":
            progress = body["progress"]
            assert progress["total"] == steps
            assert progress["percent"] == round(100 * progress["current"] / steps, 1)
            assert progress["message"] == f"step {progress['current']} of {steps}"
            observed.append(progress["current"])
        return body if body["state"] in FINISHED else None

    body = wait_until(finished, timeout=120, interval=0.2, what=f"job {job_id} to finish")
    assert body["state"] == "SUCCESS", body
    assert body["result"] == expected_inference(text, steps)
    assert body["error"] is None and body["finished_at"] and body["worker"]
    assert observed == sorted(observed), f"progress went backwards: {observed}"
    distinct = sorted(set(observed))
    assert len(distinct) >= 3, f"saw too few progress values: {observed}"
    assert all(1 <= current <= steps for current in distinct)


# --- 2. deduplication ----------------------------------------------------------------------------


def test_same_job_posted_twice_runs_once(stack, alice):
    name = unique("once")
    params = {"text": "run me once", "steps": 4, "step_seconds": 1.0}
    first = alice.submit("model_inference", params, name=name)
    assert first.status_code == 202, first.text
    assert first.json()["created"] is True
    job_id = first.json()["id"]

    second = alice.submit("model_inference", params, name=name)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == job_id
    assert second.json()["created"] is False
    assert second.json()["state"] in RUNNING, "the job was no longer running: the test proves nothing"

    body = alice.wait_for_state(job_id, "SUCCESS", "FAILURE", "REVOKED")
    assert body["state"] == "SUCCESS"
    assert body["result"] == expected_inference(params["text"], params["steps"])
    # Finished: asking again (no rerun) still answers with the same job, not a new run.
    third = alice.submit("model_inference", params, name=name)
    assert (third.status_code, third.json()["id"], third.json()["state"]) == (200, job_id, "SUCCESS")

    succeeded = f"Task jobs.model_inference[{job_id}] succeeded"
    logs = wait_until(
        lambda: (lambda text: text if succeeded in text else None)(stack.logs("worker")),
        timeout=60,
        interval=1,
        what="the worker's success line",
    )
    assert count_lines(logs, f"Task jobs.model_inference[{job_id}] received") == 1
    assert count_lines(logs, succeeded) == 1
    listed = [job for job in alice.request("GET", "/api/jobs/").json()["results"] if job["name"] == name]
    assert [job["id"] for job in listed] == [job_id]


# --- 3. several web replicas, and a one-off command in another container -----------------------

# Runs inside a web container: one request to the gunicorn of that very container.
REPLICA_REQUEST = """
import json, os, sys, urllib.error, urllib.request
method, path = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
request = urllib.request.Request(
    "http://127.0.0.1:8000" + path, data=data, method=method,
    headers={"Authorization": "Token " + os.environ["JOB_TOKEN"], "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=20) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(body)}))
"""


def via_replica(stack, index: int, token: str, method: str, path: str, payload: dict | None = None):
    args = [json.dumps(payload)] if payload is not None else []
    out = stack.exec(
        "web", "python", "-c", REPLICA_REQUEST, method, path, *args, env={"JOB_TOKEN": token}, index=index
    ).stdout
    answer = json.loads(out.strip().splitlines()[-1])
    SEEN.append((method, f"[web-{index}] {path}", answer["status"]))
    return answer["status"], answer["body"]


def test_two_web_replicas_and_a_worker_command_see_the_same_job(stack, token):
    # The web service publishes one fixed host port; two replicas cannot both bind it. WEB_PORT
    # may be a range, and then each replica gets its own port of it (no change to the file).
    port = stack.web_port
    scaled = {"WEB_PORT": f"{port}-{port + 1}"}
    try:
        stack.compose(
            "up", "-d", "--wait", "--wait-timeout", "300", "--scale", "web=2", extra_env=scaled, timeout=360
        )
        replicas = container_numbers(stack, "web")
        assert len(replicas) == 2, replicas
        one, two = replicas
        names = hostnames(stack, "web")
        assert names[one] != names[two]

        name = unique("replicas")
        params = {"text": "seen from everywhere", "steps": 2, "step_seconds": 0.5}
        status, submitted = via_replica(
            stack,
            one,
            token,
            "POST",
            "/api/jobs/",
            {"kind": "model_inference", "name": name, "params": params},
        )
        assert status == 202, submitted
        job_id = submitted["id"]

        def finished_on_two():
            status, body = via_replica(stack, two, token, "GET", f"/api/jobs/{job_id}/")
            assert status == 200, body
            return body if body["state"] in FINISHED else None

        read_two = wait_until(
            finished_on_two, timeout=120, interval=0.5, what=f"job {job_id} finished, read through web-{two}"
        )
        assert read_two["state"] == "SUCCESS"
        assert read_two["result"] == expected_inference(params["text"], params["steps"])
        status, read_one = via_replica(stack, one, token, "GET", f"/api/jobs/{job_id}/")
        assert status == 200
        for key in ("id", "state", "result", "worker", "finished_at"):
            assert read_one[key] == read_two[key], key

        # Each request was served by the replica it was sent to (gunicorn access logs).
        logs = stack.logs("web").splitlines()
        assert any(line.startswith(f"web-{one} ") and '"POST /api/jobs/ ' in line for line in logs)
        assert any(line.startswith(f"web-{two} ") and f'"GET /api/jobs/{job_id}/ ' in line for line in logs)

        # A one-off command in another container computes the id from the token and reads it.
        out = stack.manage("job", "status", "--name", name, service="worker", env={"JOB_TOKEN": token}).stdout
        shown = json.loads(out[out.index("{") :])
        assert shown["id"] == job_id
        assert shown["state"] == read_two["state"]
        assert shown["result"] == read_two["result"]
    finally:
        # Back to one replica, numbered 1 again (plain `exec web` means replica 1), on the fixed port.
        stack.compose("rm", "--stop", "--force", "web", timeout=120)
        stack.up()

    assert container_numbers(stack, "web") == [1]
    health = wait_until(
        lambda: requests.get(stack.url("/healthz"), timeout=10),
        timeout=60,
        what=f"web answering on host port {port} again",
    )
    assert health.status_code == 200
    stack.wait_healthy()


# --- 4. cancellation -------------------------------------------------------------------------------


def test_cancel_pending_and_running_jobs(stack, alice):
    # Saturate the worker (concurrency 2, prefetch 1, late acks): two long jobs hold both processes.
    blockers = []
    for number in range(2):
        response = alice.submit(
            "model_inference",
            {"text": f"blocker {number}", "steps": 30, "step_seconds": 1.0},
            name=unique("blocker"),
        )
        assert response.status_code == 202, response.text
        blockers.append(response.json()["id"])
    for job_id in blockers:
        alice.wait_for_state(job_id, "STARTED", "PROGRESS", timeout=60)

    victim = alice.submit(
        "model_inference", {"text": "victim", "steps": 1, "step_seconds": 0.1}, name=unique("victim")
    )
    assert victim.status_code == 202, victim.text
    victim_id = victim.json()["id"]
    assert alice.job(victim_id).json()["state"] == "PENDING"
    assert victim_id in waiting_messages(stack), "the victim is not waiting in the broker queue"

    cancelled = delete(alice, victim_id)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "REVOKED"
    assert delete(alice, victim_id).status_code == 409  # already finished: nothing to cancel

    # Cancel the running ones: they end REVOKED.
    for job_id in blockers:
        response = delete(alice, job_id)
        assert response.status_code == 202, response.text
    for job_id in blockers:
        body = alice.wait_for_state(job_id, "REVOKED", "SUCCESS", "FAILURE", timeout=60)
        assert body["state"] == "REVOKED", body
        assert body["error"] == "The job was cancelled."
        assert body["result"] is None

    # The worker is free now and takes the victim's message: it must drop it, not run it.
    dropped = (
        f"Discarding revoked task: jobs.model_inference[{victim_id}]",
        f"Job {victim_id} was cancelled",
    )

    def victim_disposed_of():
        logs = stack.logs("worker")
        return logs if victim_id not in queued_messages(stack) and any(d in logs for d in dropped) else None

    logs = wait_until(victim_disposed_of, timeout=90, interval=1, what="the worker dropping the victim")
    assert count_lines(logs, f"jobs.model_inference[{victim_id}] succeeded") == 0
    for job_id in blockers:
        assert count_lines(logs, f"jobs.model_inference[{job_id}] succeeded") == 0
    body = alice.job(victim_id).json()
    assert body["state"] == "REVOKED"
    assert body["started_at"] is None and body["worker"] is None and body["result"] is None

    # The worker's own events (through Flower): the blockers started, the victim never did.
    def task_info(job_id):
        response = flower(stack, f"/api/task/info/{job_id}")
        return response.json() if response.status_code == 200 else None

    def flower_saw_all_revoked():
        infos = {job_id: task_info(job_id) for job_id in [victim_id, *blockers]}
        return infos if all(i and i["state"] == "REVOKED" for i in infos.values()) else None

    infos = wait_until(flower_saw_all_revoked, timeout=60, interval=1, what="Flower seeing the revocations")
    assert infos[victim_id]["started"] is None, infos[victim_id]
    assert infos[victim_id]["succeeded"] is None
    for job_id in blockers:
        assert infos[job_id]["started"] is not None, infos[job_id]
    # The stack still runs jobs afterwards.
    after = alice.submit("noop")
    assert alice.wait_for_state(after.json()["id"], "SUCCESS", "FAILURE")["state"] == "SUCCESS"


# --- 5. error answers ----------------------------------------------------------------------------


def test_error_answers_are_json_with_the_right_status(stack, alice, bob, anonymous):
    own = alice.submit("noop", name=unique("mine"))
    assert own.status_code == 202
    own_id = own.json()["id"]

    checks: list[tuple[str, requests.Response, int]] = [
        ("unknown id", alice.job(str(uuid.uuid4())), 404),
        ("not an id", alice.job("not-a-job-id"), 404),
        ("another user's job", bob.job(own_id), 404),
        ("another user's job, cancel", delete(bob, own_id), 404),
        ("no token, list", anonymous.request("GET", "/api/jobs/"), 401),
        ("no token, read", anonymous.job(own_id), 401),
        ("no token, submit", anonymous.submit("noop"), 401),
        ("wrong token", client(stack, "0" * 64).job(own_id), 401),
    ]
    for what, response, status in checks:
        assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
        assert is_json(response), f"{what}: not JSON: {response.text[:300]}"
    assert own_id not in [job["id"] for job in bob.request("GET", "/api/jobs/").json()["results"]]
    assert alice.job(own_id).status_code == 200  # it does exist, for its owner

    invalid = [
        ("unknown kind", {"kind": "no_such_kind", "params": {}}, ("kind",)),
        ("missing kind", {"params": {}}, ("kind",)),
        (
            "steps out of range",
            {"kind": "model_inference", "params": {"text": "x", "steps": 0}},
            ("params", "steps"),
        ),
        ("missing text", {"kind": "model_inference", "params": {"steps": 2}}, ("params", "text")),
        ("unknown parameter", {"kind": "noop", "params": {"bogus": 1}}, ("params", "bogus")),
        ("y below x", {"kind": "sum_number", "params": {"x": 5, "y": 1}}, ("params", "y")),
        ("params not an object", {"kind": "noop", "params": [1, 2]}, ("params",)),
        ("bad name", {"kind": "noop", "params": {}, "name": "no spaces allowed"}, ("name",)),
    ]
    for what, payload, field_path in invalid:
        response = alice.request("POST", "/api/jobs/", json=payload)
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text[:300]}"
        assert is_json(response), what
        node = response.json()
        for key in field_path:
            assert isinstance(node, dict) and key in node, (
                f"{what}: {response.json()} does not name {field_path}"
            )
            node = node[key]

    malformed = alice.request(
        "POST", "/api/jobs/", data=b'{"kind": "noop", ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400, malformed.text
    assert is_json(malformed)

    limit = 64 * 1024
    big = json.dumps({"kind": "model_inference", "params": {"text": "x" * (limit + 1)}})
    # "Connection: close": gunicorn answers keep-alive but then drops the connection when the
    # unread body exceeds what it drains (64 KiB), so a client must not reuse it (see report).
    too_large = alice.request(
        "POST", "/api/jobs/", data=big, headers={"Content-Type": "application/json", "Connection": "close"}
    )
    assert too_large.status_code == 413, too_large.text[:300]
    assert is_json(too_large)
    assert too_large.json()["error"] == "payload_too_large"
    # Just under the limit is read (and then refused by validation, text is at most 2000 chars).
    near = json.dumps({"kind": "model_inference", "params": {"text": "x" * (limit - 200)}})
    assert len(near) <= limit
    response = alice.request("POST", "/api/jobs/", data=near, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "text" in response.json()["params"]
    # A body sent chunked (no Content-Length, as a proxy streams one of unknown size) is read, up
    # to the limit: a small one is a job, one over the limit 413.
    small = alice.request(
        "POST",
        "/api/jobs/",
        data=iter([b'{"kind": "noop", ', b'"params": {}}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.status_code == 202 and small.json()["kind"] == "noop", small.text[:300]
    chunked = alice.request(
        "POST",
        "/api/jobs/",
        headers={"Content-Type": "application/json", "Connection": "close"},
        data=iter([b'{"kind": "noop", "name": "', b"y" * limit, b'"}']),
    )
    assert chunked.status_code == 413 and chunked.json()["error"] == "payload_too_large", chunked.text[:300]


# --- 6. the raw token is stored nowhere ------------------------------------------------------------


def test_raw_token_is_nowhere_but_job_ids_are(stack, alice, token, bob_token):
    marker = alice.submit(
        "model_inference", {"text": "marker", "steps": 1, "step_seconds": 0.1}, name=unique("marker")
    )
    assert marker.status_code == 202
    job_id = marker.json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")
    tokens = {"alice": token, "bob": bob_token}

    redis = redis_everything(stack)
    assert redis, "Redis holds no keys at all"
    assert any(job_id.encode() in blob for blob in redis.values()), "the job id is not in Redis"
    for db, blob in redis.items():
        assert b"UNREADABLE-TYPE" not in blob, f"db {db} holds a key type the scan cannot read"
        for who, secret in tokens.items():
            assert not contains_secret(blob, secret), f"{who}'s raw token is in Redis db {db}"

    dump = stack.exec("postgres", "pg_dump", "-U", "app", "app").stdout
    assert job_id in dump and "e2e-alice" in dump, "pg_dump does not hold the job: nothing was checked"
    for who, secret in tokens.items():
        assert secret not in dump, f"{who}'s raw token is in PostgreSQL"

    def flower_knows_job():
        response = flower(stack, "/api/tasks")
        response.raise_for_status()
        return response.text if job_id in response.text else None

    tasks = wait_until(flower_knows_job, timeout=60, interval=1, what="Flower listing the job")
    for who, secret in tokens.items():
        assert not contains_secret(tasks, secret), f"{who}'s raw token is in Flower's task list"

    logs = stack.logs()
    services = {line.split(" ", 1)[0].rsplit("-", 1)[0] for line in logs.splitlines() if " | " in line}
    assert {"web", "worker", "beat", "flower", "postgres", "redis", "migrate"} <= services, services
    assert job_id in logs
    for who, secret in tokens.items():
        assert not contains_secret(logs, secret), f"{who}'s raw token is in the container logs"


# --- last: no 5xx anywhere in this module ----------------------------------------------------------

ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def test_no_server_error_was_seen(stack, module_started):
    assert len(SEEN) > 30, f"too few answers recorded for this check to mean anything: {SEEN}"
    errors = [entry for entry in SEEN if entry[2] >= 500]
    assert not errors, f"server errors: {errors}"
    # The browser's requests too: gunicorn's access log of the web container(s) since the start.
    logs = stack.compose("logs", "--no-color", "--since", str(module_started), "web").stdout
    answered = [match.groupdict() for match in map(ACCESS_LINE.search, logs.splitlines()) if match]
    assert any(entry["path"].startswith("/api/jobs/") for entry in answered), logs[-2000:]
    errors = [entry for entry in answered if int(entry["status"]) >= 500]
    assert not errors, f"server errors in web's access log: {errors}"
