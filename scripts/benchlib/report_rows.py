"""Rows 1 to 6 of scripts/bench's table, built from the measurements: each figure beside its
baseline and target, and CPU per 1,000 jobs by container."""

from bench_stack import SERVICE_ORDER
from load import percentile
from report import TARGETS, ratio_of

CPU_UNIT = "CPU ms"


def cpu_total_row(row: int, measure: str, ours: dict, baseline_name: str, baseline: dict) -> dict:
    """CPU ms per 1,000 (jobs, submissions, requests) of all containers, ours beside a baseline;
    the ratio is the baseline's / ours, so above 1 ours is the cheaper."""
    a, b = ours["cpu_ms_per_1000"]["total"], baseline["cpu_ms_per_1000"]["total"]
    return {
        "row": row,
        "measure": measure,
        "value": a,
        "unit": CPU_UNIT,
        "baseline_name": baseline_name,
        "baseline": b,
        "ratio": ratio_of(b, a),
    }


def cpu_container_rows(row: int, ours: dict, baselines: list[tuple[str, dict]]) -> list[dict]:
    """One line per service: ours, the first baseline's figure for the same service, and the
    others' after it ("also"); 0 where a side had no such container."""
    figures = [ours["cpu_ms_per_1000"], *(side["cpu_ms_per_1000"] for _, side in baselines)]
    services = {service for figure in figures for service in figure if service != "total"}
    ordered = [s for s in SERVICE_ORDER if s in services] + sorted(services - set(SERVICE_ORDER))
    rows = []
    for service in ordered:
        (name, value), *also = [
            # The raw-Celery baseline's client is a process in web (docker compose exec).
            (
                f"{name} (with its client)" if service == "web" and name == "raw Celery" else name,
                side["cpu_ms_per_1000"].get(service, 0.0),
            )
            for name, side in baselines
        ]
        rows.append(
            {
                "row": row,
                "measure": f"  {service}",
                "unit": CPU_UNIT,
                "value": ours["cpu_ms_per_1000"].get(service, 0.0),
                "baseline_name": name,
                "baseline": value,
                "also": also,
            }
        )
    return rows


def build_rows(m: dict, wanted: set[int]) -> list[dict]:
    rows = []
    if 1 in wanted:
        sub, who, index = m["submit"]["per_s"], m["whoami"]["per_s"], m["index"]["per_s"]
        busy = m["submit_busy"]["per_s"]
        rows += [
            {
                "row": 1,
                "measure": "job submissions POST /api/jobs/ (workers paused)",
                "value": sub,
                "unit": "/s",
                "baseline_name": "GET /api/whoami/",
                "baseline": who,
                "ratio": ratio_of(sub, who),
                "target": f">= {TARGETS['submit']:.2f}",
                "met": sub >= TARGETS["submit"] * who,
            },
            cpu_total_row(
                1,
                "  CPU per 1,000 submissions (workers paused)",
                m["submit"],
                "GET /api/whoami/ per 1,000",
                m["whoami"],
            ),
            {
                "row": 1,
                "measure": "  ...while the worker runs them",
                "value": busy,
                "unit": "/s",
                "baseline_name": "GET /api/whoami/",
                "baseline": who,
                "ratio": ratio_of(busy, who),
            },
            {
                "row": 1,
                "measure": "  token lookup: GET /api/whoami/",
                "value": who,
                "unit": "/s",
                "baseline_name": "GET / (no auth)",
                "baseline": index,
                "ratio": ratio_of(who, index),
                "target": f">= {TARGETS['token']:.2f}",
                "met": who >= TARGETS["token"] * index,
            },
        ]
    if 2 in wanted:
        # CPU per job first: the shared machine's load moves it far less than jobs/s.
        rows.append(
            cpu_total_row(
                2,
                f"no-op jobs end to end via the API (N={m['e2e']['n']}): CPU per 1,000 jobs",
                m["e2e"],
                "raw Celery apply_async",
                m["raw"],
            )
        )
        rows += cpu_container_rows(2, m["e2e"], [("raw Celery", m["raw"])])
        api, raw = m["e2e"]["per_s"], m["raw"]["per_s"]
        rows.append(
            {
                "row": 2,
                "measure": f"  jobs/s end to end via the API (N={m['e2e']['n']})",
                "value": api,
                "unit": "jobs/s",
                "baseline_name": "raw Celery apply_async",
                "baseline": raw,
                "ratio": ratio_of(api, raw),
                "target": f">= {TARGETS['e2e']:.2f}",
                "met": api >= TARGETS["e2e"] * raw,
            }
        )
    if 3 in wanted:
        job, who = m["status"], m["whoami"]
        rows += [
            {
                "row": 3,
                "measure": "status reads -c50 GET /api/jobs/<id>/ p50",
                "value": job["p50_us"] / 1000,
                "unit": "ms",
                "baseline_name": "whoami p50",
                "baseline": who["p50_us"] / 1000,
                "ratio": ratio_of(job["p50_us"], who["p50_us"]),
            },
            {
                "row": 3,
                "measure": "status reads -c50 p99",
                "value": job["p99_us"] / 1000,
                "unit": "ms",
                "baseline_name": "whoami p99",
                "baseline": who["p99_us"] / 1000,
                "ratio": ratio_of(job["p99_us"], who["p99_us"]),
                "target": f"<= {TARGETS['status_p99']:.2f}",
                "met": job["p99_us"] <= TARGETS["status_p99"] * who["p99_us"],
            },
            {
                "row": 3,
                "measure": "status reads -c50 throughput",
                "value": job["per_s"],
                "unit": "/s",
                "baseline_name": "whoami",
                "baseline": who["per_s"],
                "ratio": ratio_of(job["per_s"], who["per_s"]),
            },
        ]
    if 4 in wanted:
        api, raw = m["latency_api"], m["raw"]["latencies_ms"]
        for p in (50, 99):
            a, b = percentile(api, p), percentile(raw, p)
            rows.append(
                {
                    "row": 4,
                    "measure": f"submit-to-SUCCESS p{p} (n={len(api)})",
                    "value": a,
                    "unit": "ms",
                    "baseline_name": f"raw Celery round trip p{p}",
                    "baseline": b,
                    "ratio": ratio_of(a, b),
                }
            )
    if 5 in wanted:
        mem, img = m["memory"], m["image"]
        total = sum(mem.values())
        rows.append(
            {
                "row": 5,
                "measure": "memory at rest, whole stack",
                "value": total,
                "unit": "MB",
                "baseline_name": "budget",
                "baseline": TARGETS["memory_mb"],
                "ratio": total / TARGETS["memory_mb"],
                "target": f"< {TARGETS['memory_mb']} MB",
                "met": total < TARGETS["memory_mb"],
            }
        )
        for service in sorted(mem, key=lambda s: -mem[s]):
            rows.append(
                {
                    "row": 5,
                    "measure": f"  {service}",
                    "value": mem[service],
                    "unit": "MB",
                    "baseline_name": "share of total",
                    "baseline": None,
                    "ratio": mem[service] / total,
                }
            )
        rows.append(
            {
                "row": 5,
                "measure": "app image size",
                "value": img["mb"],
                "unit": "MB",
                "baseline_name": f"base {img['base_image']}",
                "baseline": img["base_mb"],
                "ratio": ratio_of(img["mb"], img["base_mb"]),
                "target": f"< {TARGETS['image_mb']} MB",
                "met": img["mb"] < TARGETS["image_mb"],
            }
        )
    if 6 in wanted and "peer_submit" in m:
        # CPU per job end to end first (as in row 2), for ours, the peer and raw Celery.
        e2e, peer_e2e, raw = m["e2e"], m["peer_e2e"], m["raw"]
        rows.append(
            cpu_total_row(
                6, f"ours vs naive peer: CPU per 1,000 jobs end to end (N={e2e['n']})", e2e, "peer", peer_e2e
            )
        )
        rows += cpu_container_rows(6, e2e, [("peer", peer_e2e), ("raw Celery", raw)])
        rows.append(
            cpu_total_row(6, "  ours vs raw Celery: CPU per 1,000 jobs", e2e, "raw Celery apply_async", raw)
        )
        rows.append(
            cpu_total_row(
                6, "  peer vs raw Celery: CPU per 1,000 jobs", peer_e2e, "raw Celery apply_async", raw
            )
        )
        pairs = [
            (
                "submissions POST (workers paused)",
                m["submit"]["per_s"],
                m["peer_submit"]["per_s"],
                "/s",
                "peer_submit",
            ),
            (
                "status reads -c50 throughput",
                m["status"]["per_s"],
                m["peer_status"]["per_s"],
                "/s",
                "peer_status",
            ),
            (
                f"no-op jobs end to end (N={m['e2e']['n']})",
                m["e2e"]["per_s"],
                m["peer_e2e"]["per_s"],
                "jobs/s",
                "peer_e2e",
            ),
        ]
        for measure, ours, peer, unit, target in pairs:
            rows.append(
                {
                    "row": 6,
                    "measure": f"ours vs naive peer: {measure}",
                    "value": ours,
                    "unit": unit,
                    "baseline_name": "peer",
                    "baseline": peer,
                    "ratio": ratio_of(ours, peer),
                    "target": f">= {TARGETS[target]:.2f}",
                    "met": ours >= TARGETS[target] * peer,
                }
            )
            cpu_measure = {
                "peer_submit": "  CPU per 1,000 submissions (workers paused)",
                "peer_status": "  CPU per 1,000 status reads",
            }.get(target)
            if cpu_measure:
                rows.append(cpu_total_row(6, cpu_measure, m[target.removeprefix("peer_")], "peer", m[target]))
        ours, peer = m["status"]["p99_us"] / 1000, m["peer_status"]["p99_us"] / 1000
        rows.append(
            {
                "row": 6,
                "measure": "  status reads -c50 p99",
                "value": ours,
                "unit": "ms",
                "baseline_name": "peer p99",
                "baseline": peer,
                "ratio": ratio_of(ours, peer),
            }
        )
    return rows
