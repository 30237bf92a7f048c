"""scripts/soak's parts that talk to the stack: the compose project, an API client per thread, the
ledger of answers, and the sampler of Redis's memory and PostgreSQL's size over time."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from composelib import ComposeError, ComposeProject  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("postgres", "redis", "web", "worker", "beat", "flower")
FINISHED = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")
# 503s the API documents: Redis over its admission limit or at maxmemory, a service away.
DOCUMENTED_503 = ("job_store_full", "service_unavailable")
LIST_PAGE = 200  # the list endpoint's largest page
SoakError = ComposeError
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[soak {time.monotonic() - T0:6.1f}s] {message}", flush=True)


class Stack(ComposeProject):
    def __init__(self, project: str, port: int, env: dict[str, str]):
        self.port = port
        env = {
            **os.environ,
            "COMPOSE_DISABLE_ENV_FILE": "1",
            **env,
            "WEB_PORT": str(port),
            "APP_IMAGE": env.get("APP_IMAGE", os.environ.get("APP_IMAGE", f"{project}-app:latest")),
        }
        env.setdefault("FLOWER_PORT", str(port + 555))
        super().__init__(project, env)

    def up(self) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "600", timeout=900)

    def redis_info(self, section: str) -> dict[str, str]:
        out = self.exec("redis", "redis-cli", "--no-auth-warning", "INFO", section, timeout=60)
        return dict(
            line.split(":", 1)
            for line in out.replace("\r", "").splitlines()
            if ":" in line and not line.startswith("#")
        )

    def redis(self, *command: str, db: int = 0) -> str:
        return self.exec(
            "redis", "redis-cli", "--no-auth-warning", "-n", str(db), *command, timeout=60
        ).strip()

    def postgres_bytes(self) -> int:
        sql = "SELECT pg_database_size(current_database())"
        return int(
            self.exec(
                "postgres",
                "sh",
                "-c",
                f'psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"',
                timeout=60,
            ).strip()
        )

    def containers(self) -> dict[str, dict]:
        """Service -> {restarts, oom_killed} over its containers."""
        ids = self.container_ids(all=True)
        if not ids:
            return {}
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
        state: dict[str, dict] = {}
        for container in json.loads(out):
            service = container["Config"]["Labels"].get("com.docker.compose.service", "?")
            entry = state.setdefault(service, {"restarts": 0, "oom_killed": False})
            entry["restarts"] += container["RestartCount"]
            entry["oom_killed"] |= container["State"]["OOMKilled"]
        return state

    def tokens(self, count: int) -> list[str]:
        """One new API user (and token) per client, made in one command."""
        prefix = f"soak-{uuid.uuid4().hex[:8]}"
        script = (
            f"from django.contrib.auth import get_user_model\nfrom knox.models import AuthToken\n"
            f"for n in range({count}):\n"
            f"    user = get_user_model().objects.create(username='{prefix}-' + str(n))\n"
            f"    print('TOKEN', AuthToken.objects.create(user=user)[1])\n"
        )
        out = self.exec("web", "python", "manage.py", "shell", "-c", script)
        tokens = [line.split()[1] for line in out.splitlines() if line.startswith("TOKEN ")]
        if len(tokens) != count:
            raise SoakError(f"made {len(tokens)} tokens of {count}: {out[-500:]}")
        return tokens


class Client:
    """One API user on one keep-alive connection."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        payload = json.dumps(body) if body is not None else None
        for attempt in (1, 2, 3):
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                try:
                    return response.status, json.loads(raw or b"null") or {}
                except ValueError:
                    return response.status, {"error": "not_json", "body": raw[:200].decode(errors="replace")}
            except (OSError, http.client.HTTPException):
                # A recycled gunicorn worker closed the keep-alive connection: a new one.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 3:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def states(self, newest: int | None = None) -> dict[str, str]:
        """Job id -> state of this user's jobs: the newest `newest`, or all of them."""
        found: dict[str, str] = {}
        page = 1
        while True:
            size = min(LIST_PAGE, newest) if newest else LIST_PAGE
            status, body = self.call("GET", f"/api/jobs/?page_size={size}&page={page}")
            if status != 200:
                raise SoakError(f"GET /api/jobs/ answered {status}: {body}")
            found.update((job["id"], job["state"]) for job in body["results"])
            if newest or not body.get("next"):
                return found
            page += 1


class Ledger:
    """Answers and accepted jobs, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers: Counter = Counter()
        self.accepted: dict[str, list[str]] = {}  # token -> job ids
        self.submitted = 0

    def record(self, token: str, status: int, body: dict) -> bool:
        with self.lock:
            self.submitted += 1
            key = str(status) if status < 500 else f"{status} {body.get('error', '?')}"
            self.answers[key] += 1
            if status == 202:
                self.accepted.setdefault(token, []).append(body["id"])
                return True
        return False

    def accepted_count(self) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.accepted.values())

    def undocumented(self) -> dict[str, int]:
        """Answers that are neither 2xx nor a documented 503."""
        return {
            key: count
            for key, count in self.answers.items()
            if not key.startswith("2") and not (key.startswith("503 ") and key[4:] in DOCUMENTED_503)
        }


class Sampler:
    """Every `interval` seconds: Redis's memory and keys, the queue, PostgreSQL's size, answers."""

    def __init__(self, stack: Stack, ledger: Ledger, interval: float):
        self.stack, self.ledger, self.interval = stack, ledger, interval
        self.series: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Sampler":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a missed sample is reported, not fatal
                log(f"sample failed: {exc}")

    def sample(self) -> dict:
        memory = self.stack.redis_info("memory")
        keyspace = self.stack.redis_info("keyspace")
        keys = sum(int(value.split(",")[0].split("=")[1]) for value in keyspace.values())
        accepted = self.ledger.accepted_count()
        previous = self.series[-1] if self.series else None
        now = time.monotonic() - T0
        row = {
            "t": round(now, 1),
            "redis_used": int(memory["used_memory"]),
            "redis_max": int(memory["maxmemory"]),
            "redis_rss": int(memory["used_memory_rss"]),
            "keys": keys,
            "queued": int(self.stack.redis("LLEN", "jobs") or 0),
            "postgres_bytes": self.stack.postgres_bytes(),
            "accepted": accepted,
            "answers": dict(self.ledger.answers),
        }
        row["jobs_per_s"] = (
            round((accepted - previous["accepted"]) / (now - previous["t"]), 1)
            if previous and now > previous["t"]
            else 0.0
        )
        self.series.append(row)
        answers = " ".join(f"{key}:{value}" for key, value in sorted(row["answers"].items())) or "-"
        log(
            f"redis {row['redis_used'] / 1e6:7.2f} MB of {row['redis_max'] / 1e6:.0f} (rss {row['redis_rss'] / 1e6:.1f})"
            f" keys {keys:7d} queued {row['queued']:6d} | postgres {row['postgres_bytes'] / 1e6:7.1f} MB"
            f" | accepted {accepted:7d} ({row['jobs_per_s']:6.1f}/s) answers {answers}"
        )
        return row

    def at(self, seconds: float) -> dict:
        """The first sample taken at least `seconds` after the first one."""
        start = self.series[0]["t"]
        return next((row for row in self.series if row["t"] - start >= seconds), self.series[-1])
