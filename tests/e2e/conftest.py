"""The compose stack every e2e test runs against: built and started once per session.

It runs with the shipped defaults (no .env, every timeout as docker-compose.yml has it), except
for host ports, so it can run beside a developer's stack, and BENCH_PEER_APP=1 (the bench's
peer app, for tests/e2e/test_bench.py).
The app image gets a tag of its own (APP_IMAGE), so the stack keeps running the image this
session built even when someone rebuilds the default tag for a developer stack meanwhile.
"""

import os

import pytest

from tests.support.stack import Api, Stack, running

PROJECT = os.environ.get("E2E_PROJECT", "djcs-e2e")
# The test stacks' host ports (here and in each e2e module) stay below 32768: Linux hands out
# 32768-60999 as the source ports of outgoing connections, and a stack cannot publish a port that
# a connection on 127.0.0.1 happens to hold ("address already in use", seen in CI).
E2E_ENV = {
    "APP_IMAGE": os.environ.get("E2E_APP_IMAGE", f"{PROJECT}-app:latest"),
    "WEB_PORT": os.environ.get("E2E_WEB_PORT", "18000"),
    "FLOWER_PORT": os.environ.get("E2E_FLOWER_PORT", "15555"),
    # The bench-only naive peer app (services/benchpeer, /bench-peer/api/), so that
    # tests/e2e/test_bench.py measures scripts/bench's row 6 too. It adds its own table and
    # URLs and changes nothing of the job API the other tests drive.
    "BENCH_PEER_APP": "1",
}


@pytest.fixture(scope="session")
def stack():
    with running(Stack(project=PROJECT, env=E2E_ENV)) as stack:
        yield stack


@pytest.fixture(scope="session")
def token(stack) -> str:
    return stack.create_token("e2e-alice")


@pytest.fixture(scope="session")
def api(stack, token) -> Api:
    return Api(stack.url(""), token)
