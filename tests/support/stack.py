"""The compose stack under test: a separate compose project driven through the docker CLI.

It is started exactly as a user starts it (`docker compose up`, no .env, dev defaults), on its
own project name and host ports so it never collides with a developer's running stack.
Image selection (PYTHON_IMAGE, REDIS_IMAGE, POSTGRES_IMAGE) comes from the environment.
Compose's own `.env` lookup is switched off: a file someone keeps in the work tree can neither
change what the tests run nor supply a variable a test left unset on purpose.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
LONG_RUNNING = ("postgres", "redis", "web", "worker", "beat", "flower")


@dataclass(repr=False)
class Stack:
    project: str
    files: tuple[str, ...] = ("docker-compose.yml",)
    env: dict[str, str] = field(default_factory=dict)
    # Variables the compose commands must not see, so that compose's defaults apply.
    unset: tuple[str, ...] = ()

    def __repr__(self) -> str:  # env may hold secrets: name them only
        return f"{type(self).__name__}(project={self.project!r}, env={sorted(self.env)}, unset={self.unset})"

    def without(self, *names: str) -> "Stack":
        """The same project with these variables left unset (so compose's dev defaults apply)."""
        return type(self)(
            project=self.project, files=self.files, env=dict(self.env), unset=(*self.unset, *names)
        )

    @property
    def web_port(self) -> int:
        return int(self.env["WEB_PORT"])

    @property
    def flower_port(self) -> int:
        return int(self.env["FLOWER_PORT"])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def flower_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.flower_port}{path}"

    def compose(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        input: str | None = None,
        extra_env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "-p", self.project]
        for name in self.files:
            command += ["-f", str(ROOT / name)]
        env = {**os.environ, **self.env, **(extra_env or {}), "COMPOSE_DISABLE_ENV_FILE": "1"}
        for name in self.unset:
            env.pop(name, None)
        result = subprocess.run(
            [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=input, env=env
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def up(self, *services: str, timeout: float = 600, extra: tuple[str, ...] = ()) -> None:
        self.compose(
            "up", "-d", "--wait", "--wait-timeout", str(int(timeout)), *extra, *services, timeout=timeout + 60
        )

    def exec(
        self,
        service: str,
        *command: str,
        env: dict | None = None,
        input: str | None = None,
        check: bool = True,
        index: int | None = None,
    ) -> subprocess.CompletedProcess:
        args = ["exec", "-T"]
        if index is not None:
            args += ["--index", str(index)]
        for name, value in (env or {}).items():
            args += ["-e", f"{name}={value}"]
        return self.compose(*args, service, *command, input=input, check=check)

    def manage(self, *args: str, service: str = "web", **kwargs) -> subprocess.CompletedProcess:
        return self.exec(service, "python", "manage.py", *args, **kwargs)

    def container_ids(self, service: str, all: bool = False) -> list[str]:
        args = ["ps", "-q", *(["-a"] if all else []), service]
        return self.compose(*args).stdout.split()

    def inspect(self, service: str, all: bool = False) -> dict:
        """`docker inspect` of the service's first container (all=True: stopped ones count)."""
        ids = self.container_ids(service, all=all)
        assert ids, f"{service} has no {'' if all else 'running '}container"
        out = subprocess.run(
            ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        return json.loads(out)[0]

    def state(self) -> dict[str, list[dict]]:
        """Service name -> its containers as `docker compose ps -a --format json` reports them."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        services: dict[str, list[dict]] = {}
        for row in rows:
            services.setdefault(row["Service"], []).append(row)
        return services

    def healthy(self, *names: str) -> bool:
        state = self.state()
        return all(
            state.get(name) and all(c.get("Health") == "healthy" for c in state[name])
            for name in (names or LONG_RUNNING)
        )

    def wait_healthy(self, *names: str, timeout: float = 180) -> None:
        wait_until(
            lambda: self.healthy(*names),
            timeout=timeout,
            interval=1,
            what=f"healthy {', '.join(names or LONG_RUNNING)}",
        )

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--timestamps", *services).stdout

    def save_logs(self, label: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.project}-{label}.log"
        path.write_text(self.logs())
        return path

    def create_token(self, username: str) -> str:
        out = self.manage("create_api_user", username, "--existing-ok").stdout.strip()
        token = out.splitlines()[-1].strip()
        assert len(token) == 64, f"unexpected create_api_user output: {out!r}"
        return token

    def down(self, volumes: bool = True) -> None:
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), timeout=300)


@contextmanager
def running(stack: Stack, *, up: bool = True, up_timeout: float = 600) -> Iterator[Stack]:
    """A fixture's whole life of a stack: fresh start (build, optionally up), then logs saved to
    artifacts/ and everything removed (unless E2E_KEEP=1)."""
    stack.down()
    try:
        stack.compose("build", timeout=1200)
        if up:
            stack.up(timeout=up_timeout)
        yield stack
    finally:
        try:
            stack.save_logs("final")
        finally:
            if os.environ.get("E2E_KEEP") != "1":
                stack.down()


class Api:
    """The jobs API of a running stack, as one client (one token) sees it."""

    def __init__(self, base_url: str, token: str | None):
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def submit(
        self, kind: str, params: dict | None = None, name: str | None = None, rerun: bool = False
    ) -> requests.Response:
        body: dict = {"kind": kind, "params": params or {}}
        if name is not None:
            body["name"] = name
        if rerun:
            body["rerun"] = True
        return self.request("POST", "/api/jobs/", json=body)

    def job(self, job_id: str) -> requests.Response:
        return self.request("GET", f"/api/jobs/{job_id}/")

    def wait_for_state(self, job_id: str, *states: str, timeout: float = 120) -> dict:
        def reached():
            body = self.job(job_id).json()
            return body if body["state"] in states else None

        return wait_until(
            reached, timeout=timeout, interval=0.3, what=f"job {job_id} to reach {'/'.join(states)}"
        )
