"""A compose project driven through the docker CLI, for the scripts that load a stack
(scripts/bench, scripts/soak): commands that fail raise with the end of their stderr."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ComposeError(Exception):
    pass


class ComposeProject:
    def __init__(self, project: str, env: dict, files: tuple[str, ...] = ("docker-compose.yml",)):
        self.project, self.env, self.files = project, env, files

    def command(self, *args: str) -> list[str]:
        return [
            "docker",
            "compose",
            "-p",
            self.project,
            *(arg for name in self.files for arg in ("-f", str(ROOT / name))),
            *args,
        ]

    def failed(self, args: tuple[str, ...], returncode: int, stderr: str) -> ComposeError:
        return ComposeError(
            f"docker compose ({', '.join(self.files)}) {' '.join(args[:3])} exited "
            f"{returncode}:\n{stderr[-3000:]}"
        )

    def compose(
        self, *args: str, input: str | None = None, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*args),
            cwd=ROOT,
            env=self.env,
            input=input,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise self.failed(args, result.returncode, result.stderr)
        return result

    def exec(self, service: str, *command: str, timeout: float = 600) -> str:
        return self.compose("exec", "-T", service, *command, timeout=timeout).stdout

    def running_services(self) -> set[str]:
        return set(self.compose("ps", "--status", "running", "--services", check=False).stdout.split())

    def published_port(self, service: str, port: int) -> int | None:
        result = self.compose("port", service, str(port), check=False)
        match = re.search(r":(\d+)\s*$", result.stdout.strip())
        return int(match.group(1)) if result.returncode == 0 and match else None

    def container_ids(self, *, all: bool = False) -> list[str]:
        return self.compose("ps", "-aq" if all else "-q").stdout.split()


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ComposeError(f"docker {' '.join(args[:2])} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout
