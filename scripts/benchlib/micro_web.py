"""Web's own CPU per request, ours against the naive peer, in one process: the submission and the
status read through Django's test client (the whole middleware and DRF stack, no HTTP server), run
inside web of a stack started with BENCH_PEER_APP=1:

  docker compose -p djcs-bench exec -T web python - [profile] < scripts/benchlib/micro_web.py

Prints the process CPU time (time.process_time: this process only, not Redis's or PostgreSQL's)
per request of each, alternated ours, peer, peer, ours three times, and the medians. With
`profile`, also cProfile's top functions of 300 of our submissions (by own CPU time). Behind the
"web's Python" lines of docs/benchmarks.md; not a substitute for the bench's cgroup figures.
"""

import cProfile
import io
import pstats
import statistics
import sys
import time

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

USER = "bench-micro-web"
N = 300


def cpu_per_request(fn, n: int = N) -> float:
    """CPU ms of this process per call of fn."""
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) * 1000 / n


out = io.StringIO()
call_command("create_api_user", USER, "--existing-ok", stdout=out)
ours = Client(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip().splitlines()[-1]}", HTTP_HOST="localhost")
user = get_user_model().objects.get(username=USER)
peer_token, _ = Token.objects.get_or_create(user=user)
peer = Client(HTTP_AUTHORIZATION=f"Token {peer_token.key}", HTTP_HOST="localhost")


def submit_ours():
    response = ours.post("/api/jobs/", {"kind": "noop"}, content_type="application/json")
    assert response.status_code == 202, response.content


def submit_peer():
    response = peer.post("/bench-peer/api/jobs/", {"kind": "noop"}, content_type="application/json")
    assert response.status_code == 202, response.content


ours_id = ours.post("/api/jobs/", {"kind": "noop"}, content_type="application/json").json()["id"]
peer_id = peer.post("/bench-peer/api/jobs/", {"kind": "noop"}, content_type="application/json").json()["id"]
time.sleep(2)  # both run (the stack's worker) before they are read


def read_ours():
    assert ours.get(f"/api/jobs/{ours_id}/").status_code == 200


def read_peer():
    assert peer.get(f"/bench-peer/api/jobs/{peer_id}/").status_code == 200


try:
    # Status reads first: the submissions' jobs then keep the worker busy beside the measurement.
    for what, ours_fn, peer_fn in (
        ("status read", read_ours, read_peer),
        ("submission", submit_ours, submit_peer),
    ):
        figures = {"ours": [], "peer": []}
        for _ in range(3):
            for side in ("ours", "peer", "peer", "ours"):
                figures[side].append(cpu_per_request(ours_fn if side == "ours" else peer_fn))
        o, p = statistics.median(figures["ours"]), statistics.median(figures["peer"])
        print(
            f"{what:12} web CPU ms per request: ours {o:.2f} (of {', '.join(f'{x:.2f}' for x in figures['ours'])}),"
            f" peer {p:.2f} (of {', '.join(f'{x:.2f}' for x in figures['peer'])}); peer / ours {p / o:.2f}"
        )
    if "profile" in sys.argv[1:]:
        for what, fn in (("our submissions", submit_ours), ("our status reads", read_ours)):
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for _ in range(N):
                fn()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            print(f"--- {what}, {N}, by own CPU time ---")
            print(text.getvalue())
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
            print(f"--- {what}, {N}, cumulative ---")
            print(text.getvalue())
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_callees(
                r"job_actions.py.*\(submit\)|publisher.py.*\(publish\)|views.py.*\((post|get|initial)\)"
            )
            print(f"--- {what}: what our own functions call ---")
            print(text.getvalue())
finally:
    user.delete()
