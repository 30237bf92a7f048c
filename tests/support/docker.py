"""Thin wrappers over the docker CLI (the tests drive the real engine, nothing is mocked)."""

import subprocess


class DockerError(AssertionError):
    pass


def docker(
    *args: str, check: bool = True, timeout: float = 300, input: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, input=input, env=env
    )
    if check and result.returncode != 0:
        raise DockerError(
            f"docker {' '.join(args[:3])} ... exited {result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return result


def published_port(container: str, port: int) -> int:
    """Host port that 127.0.0.1 maps to the container's port."""
    out = docker("port", container, f"{port}/tcp").stdout.strip().splitlines()
    return int(out[0].rsplit(":", 1)[1])
