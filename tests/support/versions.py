"""The versions of the services the e2e tests ran on, beside the version table of
docs/production.md ("Versions"), which says per image tag which version CI ran.

Each module that starts a service records what that service reports itself (`rabbitmqctl
version`, `caddy version`, `INFO server`, `SHOW server_version`); tests/conftest.py prints the
lines at the end of the pytest run, each saying whether the table has the same version.
"""

import re

from tests.support.stack import ROOT

TABLE = ROOT / "docs" / "production.md"
# One line per version seen, in the order they were recorded; printed by tests/conftest.py.
SEEN: list[str] = []


def documented() -> dict[str, str]:
    """Image tag -> the version the table says CI ran (rows `| service | `tag` ... | version | date |`)."""
    text = TABLE.read_text()
    section = text[text.find("## 8. Versions") :] if "## 8. Versions" in text else ""
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        tag = re.match(r"`([^`]+)`", cells[1]) if len(cells) >= 4 else None
        if tag:
            rows[tag.group(1)] = cells[2]
    return rows


def record(tag: str, version: str, image: str) -> str:
    """Note that the service of upstream tag `tag` ran as `version` (from `image`: the tag itself
    or its CI stand-in); returns the line printed at the end of the run."""
    version = version.strip().removeprefix("v")
    expected = documented().get(tag)
    if expected is None:
        note = "not in docs/production.md's version table"
    elif expected == version:
        note = "as in docs/production.md's version table"
    else:
        note = f"docs/production.md's version table says {expected}: update the table"
    line = f"{tag}: {version} (image {image}) - {note}"
    if line not in SEEN:
        SEEN.append(line)
    return line
