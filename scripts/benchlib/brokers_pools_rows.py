"""Rows 7 and 8's lines of scripts/bench's table and their notes, from what brokers_pools.py
measured."""


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v:g}" for k, v in params.items())


def build_rows(m: dict, args) -> list[dict]:
    rows = []
    for row, reason in sorted(getattr(args, "skipped", {}).items()):
        rows.append(
            {
                "row": row,
                "measure": "Redis vs RabbitMQ end to end: skipped (see notes)",
                "value": None,
                "unit": "",
                "skipped": reason,
            }
        )
    if "brokers" in m:
        b = m["brokers"]
        rabbit, redis = b["rabbitmq"]["per_s"], b["redis"]["per_s"]
        rows.append(
            {
                "row": 7,
                "measure": f"no-op jobs end to end via the API on RabbitMQ (N={b['rabbitmq']['n']})",
                "value": rabbit,
                "unit": "jobs/s",
                "baseline_name": "the same on Redis",
                "baseline": redis,
                "ratio": rabbit / redis,
            }
        )
    if "pools" in m:
        runs = m["pools"]["runs"]
        for kind in dict.fromkeys(r["kind"] for r in runs):
            of_kind = [r for r in runs if r["kind"] == kind]
            base = next(r for r in of_kind if r["pool"] == "prefork")
            label = "CPU-bound" if kind == "sum_number" else "I/O-bound"
            for r in of_kind:
                first = r is of_kind[0]
                measure = (
                    f"{label} {kind} x{r['n']}: {r['pool']} -c{r['concurrency']}"
                    if first
                    else f"  {r['pool']} -c{r['concurrency']}"
                )
                # Per minute: a few jobs a second would print as "1 jobs/s" (whole numbers).
                rows.append(
                    {
                        "row": 8,
                        "measure": measure,
                        "value": r["per_s"] * 60,
                        "unit": "jobs/min",
                        "baseline_name": f"prefork -c{base['concurrency']}",
                        "baseline": base["per_s"] * 60,
                        "ratio": r["per_s"] / base["per_s"],
                    }
                )
    return rows


def notes(m: dict, args) -> dict:
    extra = {f"row {row}": reason for row, reason in sorted(getattr(args, "skipped", {}).items())}
    if "brokers" in m:
        b = m["brokers"]
        extra["row 7 runs (jobs/s)"] = f"Redis {b['runs']['redis']}, RabbitMQ {b['runs']['rabbitmq']}"
    if "pools" in m:
        memory = [
            f"{r['pool']} -c{r['concurrency']} {r['memory_mb']:.0f} MB"
            for r in m["pools"]["runs"]
            if r.get("memory_mb")
        ]
        if memory:
            extra["row 8 worker memory after its jobs"] = ", ".join(memory)
        # The host's 1-minute load average before row 8 and after each pool: on a shared machine
        # the CPU-bound ratios mean little when it is far above the CPU count.
        extra["row 8 load average"] = " -> ".join(f"{x:.1f}" for x in m["pools"]["load"])
        jobs = {r["kind"]: _describe(r["params"]) for r in m["pools"]["runs"]}
        extra["row 8 jobs"] = "; ".join(f"{kind}({params})" for kind, params in jobs.items())
    return extra
