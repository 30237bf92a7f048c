"""unit: no services. scripts/bench row 9's open pages poll as the pages' script does
(scripts/benchlib/live_pages.py against services/jobs/static/jobs/pages.js)."""

import re

from scripts.benchlib import live_pages
from tests.support.stack import ROOT

PAGES_JS = ROOT / "services" / "jobs" / "static" / "jobs" / "pages.js"


def test_the_bench_paces_its_pages_with_the_scripts_numbers():
    script = PAGES_JS.read_text()
    numbers = {
        name: int(value) / 1000
        for name, value in re.findall(r"const (POLL_MS|MAX_POLL_MS|ERROR_POLL_MS) = (\d+);", script)
    }
    assert numbers == {
        "POLL_MS": live_pages.POLL_S,
        "MAX_POLL_MS": live_pages.MAX_POLL_S,
        "ERROR_POLL_MS": live_pages.ERROR_POLL_S,
    }
    # ...and the same rule: doubling on 304 (pages.js: wait = Math.min(wait * 2, MAX_POLL_MS)).
    assert "wait = Math.min(wait * 2, MAX_POLL_MS);" in script


def test_waits_double_while_nothing_changes_and_reset_on_a_change():
    waits, wait = [], live_pages.POLL_S
    for status in (200, 304, 304, 304, 304, 304, 200, 503, 304):
        wait = live_pages.next_page_wait(status, wait)
        waits.append(wait)
    assert waits == [1, 2, 4, 8, 8, 8, 1, 8, 8]
    # The warm-up of the unchanged case lets every page reach the longest wait.
    assert live_pages.BACKOFF_WARM_UP_S >= 1 + 2 + 4 + 8
