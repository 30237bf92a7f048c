"""Ours and the peer measured in alternation (ours, peer, peer, ours: a load that drifts over the
four weighs on both sides alike), and the halves merged into one figure per side."""

import cgroup_cpu  # noqa: E402 - CPU time of the containers, rows 1, 2, 6 and 9


def abba(ours, peer) -> tuple[list, list]:
    """Ours, the peer, the peer, ours (each a half-length measurement): a load that drifts over
    the pair (other tenants of a shared machine) weighs on both sides alike."""
    first = ours()
    peer_parts = [peer(), peer()]
    return [first, ours()], peer_parts


def alternated(ours, peer, merge, notes: dict, name: str, figures: dict | None = None) -> tuple[dict, dict]:
    """abba() of two measurements, each side's halves merged into one figure (merge: merged_wrk
    or merged_e2e); notes[name + " ABBA"] lists the four runs, and notes[label] the runs by
    each of figures' {label: figure of a part}."""
    first, second = abba(ours, peer)
    notes[f"{name} ABBA"] = abba_note(first, second)
    for label, figure in (figures or {}).items():
        notes[label] = abba_note(first, second, figure)
    return merge(first), merge(second)


def abba_note(ours: list[dict], theirs: list[dict], figure=lambda part: part["per_s"]) -> str:
    return (
        f"ours {figure(ours[0]):.0f}, peer {figure(theirs[0]):.0f}, peer {figure(theirs[1]):.0f}, "
        f"ours {figure(ours[1]):.0f}"
    )


def cpu_ms_per_1000(part: dict, count: str = "n") -> float:
    """All containers' CPU ms per 1,000 of one measured part (a half of an alternation)."""
    return cgroup_cpu.ms_per_thousand(sum(part["cpu_s"].values()), part[count])


def merged_wrk(parts: list[dict]) -> dict:
    """One wrk figure from several runs: rates over the summed time; latency percentiles as the
    request-weighted mean of the runs' percentiles (an approximation, noted in the docs)."""
    requests = sum(p["requests"] for p in parts)
    merged = dict(parts[0])
    for key in ("requests", "ok", "errors", "duration_us", "status_errors"):
        merged[key] = sum(p[key] for p in parts)
    for key in ("p50_us", "p90_us", "p99_us", "mean_us"):
        merged[key] = sum(p[key] * p["requests"] for p in parts) / max(requests, 1)
    merged["max_us"] = max(p["max_us"] for p in parts)
    merged["per_s"] = merged["ok"] / (merged["duration_us"] / 1e6)
    merged["runs"] = [round(p["per_s"], 1) for p in parts]
    if all("cpu_s" in p for p in parts):
        merged["cpu_s"] = cgroup_cpu.summed([p["cpu_s"] for p in parts])
    return merged


def merged_e2e(parts: list[dict]) -> dict:
    n = sum(p["n"] for p in parts)
    seconds = sum(p["seconds"] for p in parts)
    submitting = sum(p["n"] / p["submit_per_s"] for p in parts)
    merged = {
        "n": n,
        "seconds": seconds,
        "per_s": n / seconds,
        "submit_per_s": n / submitting,
        "runs": [round(p["per_s"], 1) for p in parts],
    }
    if all("cpu_s" in p for p in parts):
        merged["cpu_s"] = cgroup_cpu.summed([p["cpu_s"] for p in parts])
    return merged
