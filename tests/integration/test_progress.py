"""integration: a multi-step job reports PROGRESS then SUCCESS through the API (real worker, Redis 5.0)."""

import socket
from datetime import datetime

import pytest

from jobs import job_store
from tests.integration.helpers import WORKER_NODE
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db

STEPS = 6


def test_model_inference_progress_then_success(alice):
    response = alice.submit("model_inference", {"text": "a fine day", "steps": STEPS, "step_seconds": 0.3})
    assert response.status_code == 202
    job_id = response.json()["id"]

    seen: list[dict] = []

    def finished():
        body = alice.get(job_id).json()
        seen.append(body)
        return body if body["state"] == "SUCCESS" else None

    done = wait_until(finished, timeout=30, interval=0.05, what=f"job {job_id} to succeed")

    progress = [body["progress"] for body in seen if body["state"] == "PROGRESS"]
    currents = [p["current"] for p in progress]
    assert len(set(currents)) >= 2, f"PROGRESS seen too rarely: {[b['state'] for b in seen]}"
    assert currents == sorted(currents), "progress went backwards"
    assert all(p["total"] == STEPS for p in progress)
    for p in progress:
        assert p["percent"] == round(100 * p["current"] / STEPS, 1)
        assert p["message"] == f"step {p['current']} of {STEPS}"
    # states only move forward: PENDING/STARTED, then PROGRESS, then SUCCESS
    order = {"PENDING": 0, "STARTED": 1, "PROGRESS": 2, "SUCCESS": 3}
    ranks = [order[body["state"]] for body in seen]
    assert ranks == sorted(ranks)

    assert done["result"]["steps"] == STEPS
    assert done["result"]["label"] in ("negative", "neutral", "positive")
    assert 0 <= done["result"]["score"] <= 1
    assert done["progress"] is None and done["error"] is None
    assert done["worker"] == socket.gethostname()
    assert done["started_at"] and done["finished_at"]
    assert datetime.fromisoformat(done["started_at"]) < datetime.fromisoformat(done["finished_at"])
    # Celery's extended result names the worker node that ran it.
    assert job_store.read_meta(job_id)["worker"] == WORKER_NODE
