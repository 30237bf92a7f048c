"""The import directions of docs/architecture.md, read from the source (pure logic, no services).

Only module-level imports count: a function-level import runs when it is called, where its
caller already sits on the right side of the layers.
"""

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"

# What the worker runs, beside the job kinds: none of it may reach the web layer or DRF.
WORKER_MODULES = [
    "jobs.base",
    "jobs.job_store",
    "jobs.redis_memory",
    "jobs.archive",
    "jobs.dead_workers",
    "jobs.lost_messages",
    "jobs.housekeeping",
    "jobs.redis_transport",
    "jobs.publisher",
    "jobs.metrics",
    "jobs.result_backend",
    "jobs.worker_liveness",
    "jobs.beat_scheduler",
    "config.celery",
]
WEB_ONLY = (
    "jobs.views",
    "jobs.serializers",
    "jobs.pages",
    "jobs.job_actions",
    "jobs.kind_forms",
    "jobs.auth",
    "jobs.throttling",
    "jobs.pagination",
    "config.urls",
    "web",
    "rest_framework",
    "drf_spectacular",
    "knox",
)


def module_path(name: str) -> Path | None:
    base = SERVICES.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def top_level_imports(name: str) -> set[str]:
    """Modules named by the module-level import statements of services/<name>."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = package
            for _ in range(max(node.level - 1, 0)):
                parent = parent.rpartition(".")[0]
            module = node.module or ""
            base = f"{parent}.{module}".strip(".") if node.level else module
            # `from jobs import job_store` imports the module jobs.job_store (the package is loaded
            # already); `from jobs.job_store import read_meta` imports jobs.job_store.
            submodules = {f"{base}.{a.name}" for a in node.names if module_path(f"{base}.{a.name}")}
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return found


def own_modules() -> list[str]:
    names = []
    for path in SERVICES.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(SERVICES).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(n for n in names if n)


def graph() -> dict[str, set[str]]:
    own = set(own_modules())
    return {name: {m for m in top_level_imports(name) if m in own} for name in own}


def reachable(start: str, edges: dict[str, set[str]]) -> dict[str, str]:
    """Every own module start imports, directly or not: module -> the module that imports it."""
    seen, stack = {}, [start]
    while stack:
        current = stack.pop()
        for nxt in edges.get(current, ()):
            if nxt not in seen and nxt != start:
                seen[nxt] = current
                stack.append(nxt)
    return seen


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_worker_modules_import_nothing_of_the_web_layer_or_drf(module):
    edges = graph()
    via = reachable(module, edges)
    # Third-party imports of the module itself and of every own module it reaches.
    for name in [module, *via]:
        for imported in top_level_imports(name):
            bad = next((w for w in WEB_ONLY if imported == w or imported.startswith(w + ".")), None)
            assert bad is None, f"{module} reaches {imported} (imported by {name})"


def test_no_import_cycle():
    edges = graph()
    # A cycle: a module imported by one of the modules it reaches.
    cycles = [m for m in edges if any(m in edges.get(r, ()) for r in reachable(m, edges))]
    assert not cycles, f"import cycles through {cycles}"


def test_the_walk_sees_imports():
    """The checks above would pass on an empty graph: make sure the walk finds real edges."""
    edges = graph()
    assert "jobs.job_store" in edges["jobs.base"]
    assert "jobs.publisher" in edges["jobs.lost_messages"]
    assert "rest_framework" in {m.split(".")[0] for m in top_level_imports("jobs.views")}


def test_every_module_the_architecture_page_names_exists():
    import re

    page = (SERVICES.parent / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"\b((?:jobs|config)/[a-z_/]+\.py)", page))
    modules = set(re.findall(r"\b((?:jobs|config)\.[a-z_]+)\b", page))
    assert len(paths) > 15 and len(modules) > 15, (paths, modules)
    assert [p for p in paths if not (SERVICES / p).exists()] == []
    assert [m for m in modules if module_path(m) is None] == []
    # The import diagram and the test name the same worker side.
    assert [m for m in WORKER_MODULES if m not in page] == []


def test_no_python_file_over_300_lines_unless_it_says_why():
    """services/ and scripts/ (migrations aside): a file over 300 lines says why in a line
    starting "Over 300 lines:"."""
    root = SERVICES.parent
    python = [
        p
        for p in [*SERVICES.rglob("*.py"), *(root / "scripts").rglob("*")]
        if p.is_file()
        and "migrations" not in p.parts
        and p.suffix in ("", ".py")
        and p.read_bytes()[:64].startswith((b"#!/usr/bin/env python", b'"""', b"#", b"import", b"from"))
        and (p.suffix == ".py" or p.read_bytes().startswith(b"#!/usr/bin/env python"))
    ]
    assert len(python) > 50, python
    long = [
        str(p.relative_to(root))
        for p in python
        if len(p.read_text().splitlines()) > 300 and "Over 300 lines:" not in p.read_text()
    ]
    assert long == []
