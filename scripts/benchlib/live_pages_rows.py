"""Row 9's lines of scripts/bench's table and its notes, from what live_pages.py measured."""

from live_pages import BACKOFF_WARM_UP_S, ROW


def build_rows(m: dict, args) -> list[dict]:
    if "live_pages" not in m:
        return []
    live = m["live_pages"]
    n = live["n"]
    rows = []
    for case, text in (
        ("progressing", "jobs progressing every 1 s"),
        ("unchanged", "jobs unchanged (a long step)"),
    ):
        pages, api = live[case]["pages"], live[case]["api"]
        api_name = f"{n} API pollers each 1 s"
        rows += [
            {
                "row": ROW,
                "measure": f"{n} open job pages, {text}: web's CPU",
                "unit": "CPU ms/s",
                "value": pages["web_cpu_ms_per_s"],
                "baseline_name": api_name,
                "baseline": api["web_cpu_ms_per_s"],
                "ratio": api["web_cpu_ms_per_s"] / pages["web_cpu_ms_per_s"],
            },
            {
                "row": ROW,
                "measure": f"  status reads ({pages['not_modified']:.0%} answered 304)",
                "unit": "/s",
                "value": pages["per_s"],
                "baseline_name": "API reads",
                "baseline": api["per_s"],
                "ratio": pages["per_s"] / api["per_s"],
            },
            {
                "row": ROW,
                "measure": "  web's CPU per 1,000 reads",
                "unit": "CPU ms",
                "value": pages["web_cpu_ms_per_1000"],
                "baseline_name": "API",
                "baseline": api["web_cpu_ms_per_1000"],
                "ratio": api["web_cpu_ms_per_1000"] / pages["web_cpu_ms_per_1000"],
            },
            {
                "row": ROW,
                "measure": "  whole stack's CPU",
                "unit": "CPU ms/s",
                "value": pages["stack_cpu_ms_per_s"],
                "baseline_name": "API",
                "baseline": api["stack_cpu_ms_per_s"],
                "ratio": api["stack_cpu_ms_per_s"] / pages["stack_cpu_ms_per_s"],
            },
        ]
    return rows


def notes(m: dict) -> dict:
    if "live_pages" not in m:
        return {}
    live = m["live_pages"]
    windows = {case: f"{live[case]['pages']['seconds']:.0f} s" for case in ("progressing", "unchanged")}
    return {
        "row 9": (
            f"{live['n']} pollers per side, measured {windows['progressing']} (progressing) and "
            f"{windows['unchanged']} (unchanged, after {BACKOFF_WARM_UP_S:.0f} s of backoff) each; "
            "CPU ratios are the API's / the pages' (> 1: the pages cheaper); reads ratio "
            "pages / API"
        )
    }
