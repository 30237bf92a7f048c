"""Real Redis 5.0 and PostgreSQL containers for the integration tests.

Images come from REDIS_IMAGE / POSTGRES_IMAGE (upstream redis:5.0-alpine / postgres:17 by
default, local stand-ins in CI), published on 127.0.0.1 only, removed after the run.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from tests.support.docker import docker, published_port
from tests.support.wait import wait_until

REDIS_IMAGE = os.environ.get("REDIS_IMAGE", "redis:5.0-alpine")
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "postgres:17")


@dataclass
class Services:
    redis_container: str
    postgres_container: str
    redis_version: str


def integration_selected(args: list[str], rootpath: Path) -> bool:
    """Whether the pytest arguments select any test under tests/integration."""
    integration = (rootpath / "tests" / "integration").resolve()
    for arg in args:
        path = (rootpath / arg.split("::")[0]).resolve()
        if path == integration or integration in path.parents or path in integration.parents:
            return True
    return False


def start(env: dict[str, str]) -> Services:
    """Start both servers, wait until they answer, and point env at them."""
    suffix = os.getpid()
    redis_name, postgres_name = f"djcs-it-redis-{suffix}", f"djcs-it-postgres-{suffix}"
    stop(Services(redis_name, postgres_name, ""))
    docker(
        "run",
        "-d",
        "--name",
        redis_name,
        "-p",
        "127.0.0.1::6379",
        REDIS_IMAGE,
        "--appendonly",
        "yes",
        "--requirepass",
        env["REDIS_PASSWORD"],
    )
    docker(
        "run",
        "-d",
        "--name",
        postgres_name,
        "-p",
        "127.0.0.1::5432",
        "-e",
        f"POSTGRES_USER={env['POSTGRES_USER']}",
        "-e",
        f"POSTGRES_PASSWORD={env['POSTGRES_PASSWORD']}",
        "-e",
        f"POSTGRES_DB={env['POSTGRES_DB']}",
        POSTGRES_IMAGE,
    )
    env["REDIS_HOST"] = env["POSTGRES_HOST"] = "127.0.0.1"
    env["REDIS_PORT"] = str(published_port(redis_name, 6379))
    env["POSTGRES_PORT"] = str(published_port(postgres_name, 5432))

    client = redis.Redis(
        host="127.0.0.1",
        port=int(env["REDIS_PORT"]),
        password=env["REDIS_PASSWORD"],
        protocol=2,
        socket_timeout=2,
    )
    wait_until(client.ping, timeout=60, what="integration Redis")
    version = client.info("server")["redis_version"]
    client.close()

    def postgres_ready() -> bool:
        with psycopg.connect(
            host="127.0.0.1",
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DB"],
            connect_timeout=2,
        ) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    wait_until(postgres_ready, timeout=90, interval=0.5, what="integration PostgreSQL")
    return Services(redis_name, postgres_name, version)


def stop(services: Services) -> None:
    docker("rm", "-f", "-v", services.redis_container, services.postgres_container, check=False)
