"""What every part of scripts/bench shares: paths, the log, its error, the warnings printed
under the table, units."""

import sys
import time
from pathlib import Path

from composelib import ComposeError

ROOT = Path(__file__).resolve().parents[2]


LIB = ROOT / "scripts" / "benchlib"


OFFLINE_ENV = ROOT / ".ci" / "offline.env"


IMAGE_VARS = ("PYTHON_IMAGE", "REDIS_IMAGE", "POSTGRES_IMAGE")


NOOP_BODY = '{"kind": "noop"}'


MB = 1e6


PEER_API = "/bench-peer/api/jobs/"  # services/benchpeer (BENCH_PEER_APP=1)


BenchError = ComposeError


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:5.1f}s] {message}", file=sys.stderr, flush=True)


T0 = time.monotonic()


WARNINGS: list[str] = []


UNITS = {"B": 1, "kB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 1024**2, "GB": 1e9, "GiB": 1024**3}
