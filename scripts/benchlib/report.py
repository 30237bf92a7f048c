"""scripts/bench's table: rows 1-6 from the measurements, each beside its baseline and target,
CPU per 1,000 jobs by container; and row 5's figures of the stack at rest."""

import re

from bench_stack import Stack
from common import MB, UNITS, BenchError
from composelib import docker

TARGETS = {
    "submit": 0.5,  # submissions/s >= 0.5 x the bare authenticated view
    "token": 0.8,  # the bare authenticated view >= 0.8 x the unauthenticated one
    "e2e": 0.7,  # end-to-end jobs/s >= 0.7 x raw Celery
    "status_p99": 2.0,  # status p99 <= 2 x the bare view's p99
    "image_mb": 250,  # app image < 250 MB
    "memory_mb": 700,  # idle stack < 700 MB
    "peer_submit": 1.2,  # row 6: ours >= 1.2 x the naive peer's submissions/s
    "peer_status": 1.2,  # ...status reads/s
    "peer_e2e": 1.0,  # ...end-to-end jobs/s
}


def memory(stack: Stack) -> dict[str, float]:
    """Service name -> MB in use (docker stats; several replicas are summed)."""
    ids = stack.container_ids()
    out = docker("stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *ids)
    usage: dict[str, float] = {}
    for line in out.splitlines():
        name, mem = line.split("\t")
        match = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", mem)
        service = re.sub(rf"^{re.escape(stack.project)}-|-\d+$", "", name)
        usage[service] = usage.get(service, 0) + float(match.group(1)) * UNITS[match.group(2)] / MB
    return usage


def image_sizes(stack: Stack, env: dict) -> dict:
    web = stack.compose("ps", "-q", "web").stdout.split()[0]
    image = docker("inspect", "-f", "{{.Image}}", web).strip()
    name = docker("inspect", "-f", "{{.Config.Image}}", web).strip()
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image)) / MB
    base_name = env.get("PYTHON_IMAGE") or "python:3.13-slim"
    try:
        base = int(docker("image", "inspect", "-f", "{{.Size}}", base_name)) / MB
    except BenchError:
        base = None
    return {"image": name, "mb": size, "base_image": base_name, "base_mb": base}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    return f"{value:,.0f} {unit}"


def ratio_of(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(rows: list[dict]) -> str:
    header = ("#", "measure", "stack", "baseline (same run)", "ratio", "target", "met")
    lines = []
    for r in rows:
        baseline = r.get("baseline_name") or ""
        if r.get("baseline") is not None:
            baseline += f" {fmt(r['baseline'], r['unit'])}"
        for name, value in r.get("also", ()):
            baseline += f"; {name} {fmt(value, r['unit'])}"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        met = "" if r.get("met") is None else ("yes" if r["met"] else "NO")
        lines.append(
            (
                str(r["row"]),
                r["measure"],
                fmt(r["value"], r["unit"]),
                baseline,
                ratio,
                r.get("target", ""),
                met,
            )
        )
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    right = {2, 4}

    def render(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [render(header), render(["-" * w for w in widths])]
    out += [render(line) for line in lines]
    return "\n".join(out)
