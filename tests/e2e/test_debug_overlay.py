"""The debug overlay (docker-compose.yml + docker-compose.debug.yml), as a developer uses it.

The stack runs as its own compose project ("djcs-debug", own ports and image tags) with
DEBUG_SOURCE_DIR pointing at a throwaway copy of services/, so the tests edit files in that
copy - exactly as a developer edits services/ on the host - and never in the repository.

Covered (issue 6): the overlay stack comes up healthy with web and worker on the debug image and
beat/flower unchanged; editing a view or a task takes effect without a restart command; changes
to non-Python files do not restart anything; both debugpy ports speak the Debug Adapter
Protocol, and breakpoints set through it are hit in a task (worker) and in a view (web); the
overlay file is valid with no .env and holds only overrides.
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.dap import DapClient, connected
from tests.support.stack import LONG_RUNNING, ROOT, Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = "djcs-debug"
FILES = ("docker-compose.yml", "docker-compose.debug.yml")
DEBUG_ENV = {
    "APP_IMAGE": f"{PROJECT}-app:latest",
    "APP_DEBUG_IMAGE": f"{PROJECT}-app:debug",
    "WEB_PORT": "28000",
    "FLOWER_PORT": "25555",
    "WEB_DEBUGPY_PORT": "25678",
    "WORKER_DEBUGPY_PORT": "25679",
}
DEBUGPY_PORTS = {"web": int(DEBUG_ENV["WEB_DEBUGPY_PORT"]), "worker": int(DEBUG_ENV["WORKER_DEBUGPY_PORT"])}
FLOWER_AUTH = ("admin", "insecure-dev-flower-password")  # docker-compose.yml defaults
REMOTE_ROOT = "/app"
RELOAD_TIMEOUT = 90  # seconds for a reload to be noticed and the process to serve again

# Prints "pid:start-time<TAB>command line" of the process watchfiles runs (the one started with
# `python -m debugpy --listen ...`; the debugpy adapter it spawns has no --listen). A new
# pid:start-time means the web server or worker process was restarted.
DEBUGGEE_PROBE = r"""
import os
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        argv = open(f'/proc/{pid}/cmdline', 'rb').read().decode().split('\0')
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    if 'debugpy' in argv and '--listen' in argv:
        print(f'{pid}:{fields[19]}\t' + ' '.join(argv))
"""


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_dir():
    """A world-readable copy of services/ for the overlay to mount over /app (uid 10001 reads it)."""
    path = Path(tempfile.mkdtemp(prefix="djcs-debug-src-")).resolve()
    shutil.copytree(
        ROOT / "services",
        path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "staticfiles"),
    )
    for entry in [path, *path.rglob("*")]:
        mode = entry.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if entry.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        entry.chmod(mode | extra)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def debug_stack(source_dir):
    stack = Stack(project=PROJECT, files=FILES, env={**DEBUG_ENV, "DEBUG_SOURCE_DIR": str(source_dir)})
    with running(stack, up_timeout=300):
        yield stack


@pytest.fixture(scope="module")
def debug_api(debug_stack) -> Api:
    return Api(debug_stack.url(""), debug_stack.create_token("debug-alice"))


# --- helpers -----------------------------------------------------------------------------------


def debuggee_processes(stack: Stack, service: str) -> dict[str, str]:
    """pid:start-time -> command line of the service's watched process (none mid-restart)."""
    result = stack.exec(service, "python", "-c", DEBUGGEE_PROBE, check=False)
    if result.returncode != 0:
        return {}
    return dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)


def debuggee(stack: Stack, service: str) -> str | None:
    """The restart marker of the service's watched process; None while none runs (mid-restart)."""
    found = debuggee_processes(stack, service)
    assert len(found) <= 1, f"{service} runs more than one debuggee: {found}"
    return next(iter(found), None)


def container(stack: Stack, service: str) -> dict:
    ids = stack.container_ids(service)
    assert len(ids) == 1, f"{service}: expected one running container, got {ids}"
    out = subprocess.run(
        ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return json.loads(out)[0]


def image_id(name: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def web_index(stack: Stack) -> dict:
    response = requests.get(stack.url("/"), timeout=10)
    response.raise_for_status()
    return response.json()


def web_ready(stack: Stack) -> bool:
    return requests.get(stack.url("/healthz"), timeout=10).status_code == 200


def worker_ready(stack: Stack) -> bool:
    return stack.exec("worker", "healthcheck-worker", check=False).returncode == 0


def wait_ready(stack: Stack, *services: str) -> None:
    for service in services:
        check = {"web": web_ready, "worker": worker_ready}[service]
        wait_until(lambda: check(stack), timeout=RELOAD_TIMEOUT, interval=0.5, what=f"{service} to serve")


def wait_restarted(stack: Stack, before: dict[str, str], what: str) -> dict[str, str]:
    """Until each service's debuggee differs from `before` (and runs), then until it serves."""
    after = {}
    for service, marker in before.items():
        after[service] = wait_until(
            lambda: (m := debuggee(stack, service)) and m != marker and m,
            timeout=RELOAD_TIMEOUT,
            interval=0.5,
            what=f"{service} to restart after {what}",
        )
    wait_ready(stack, *before)
    return after


def markers(stack: Stack, *services: str) -> dict[str, str]:
    return {
        service: wait_until(
            lambda: debuggee(stack, service),
            timeout=RELOAD_TIMEOUT,
            interval=0.5,
            what=f"{service}'s debuggee process",
        )
        for service in services
    }


def edit(path: Path, old: str, new: str) -> str:
    """Replace the one occurrence of `old` in the file; returns the original text."""
    original = path.read_text()
    assert original.count(old) == 1, f"expected exactly one {old!r} in {path}"
    path.write_text(original.replace(old, new))
    return original


def function_line(path: Path, function: str, statement: str) -> tuple[int, str]:
    """1-based line number and text of the first line starting with `statement` in `function`."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if line and not line[0].isspace():
            break
        if line.strip().startswith(statement):
            return number + 1, line
    raise AssertionError(f"no {statement!r} line in {function}() of {path}")


def log_count(stack: Stack, service: str, needle: str) -> int:
    return stack.compose("logs", "--no-color", service).stdout.count(needle)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def submit(api: Api, kind: str, params: dict | None = None) -> str:
    """Submit a new job (retrying while web is restarting); returns its id."""
    name = unique(f"debug-{kind}")

    def submitted():
        response = api.submit(kind, params, name=name)
        assert response.status_code in (200, 202), (response.status_code, response.text)
        return response.json()["id"]

    return wait_until(submitted, timeout=RELOAD_TIMEOUT, interval=0.5, what=f"web to accept a {kind} job")


def launch_json() -> dict:
    """.vscode/launch.json (JSON with // comment lines, as VS Code allows)."""
    text = (ROOT / ".vscode" / "launch.json").read_text()
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


def launch_configs() -> dict[str, dict]:
    """launch.json's configurations by name."""
    return {config["name"]: config for config in launch_json()["configurations"]}


def attach_options(service: str, source_dir: Path) -> dict:
    """The attach arguments of the shipped VS Code configuration for the service, with the
    workspace's services/ replaced by the copy this stack mounts."""
    config = launch_configs()[f"Attach to {service} (debugpy)"]
    mappings = [
        {
            "localRoot": m["localRoot"].replace("${workspaceFolder}/services", str(source_dir)),
            "remoteRoot": m["remoteRoot"],
        }
        for m in config["pathMappings"]
    ]
    return {"justMyCode": config["justMyCode"], "pathMappings": mappings}


def compose_plain(*args: str) -> subprocess.CompletedProcess:
    """`docker compose -f docker-compose.yml -f docker-compose.debug.yml ...` as a developer runs it:
    no .env (an empty env file stands in, whatever is in the working tree) and none of the
    variables this suite sets."""
    keep = (
        "PATH",
        "HOME",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_CONTEXT",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "XDG_RUNTIME_DIR",
    )
    env = {name: os.environ[name] for name in keep if name in os.environ}
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        return subprocess.run(
            ["docker", "compose", "--env-file", empty.name, *sum((["-f", f] for f in FILES), []), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


# --- 5. the overlay file (no stack needed) ------------------------------------------------------


def test_overlay_config_is_valid_without_env_and_holds_only_overrides():
    result = compose_plain("config", "-q")
    assert result.returncode == 0, result.stderr

    text = (ROOT / "docker-compose.debug.yml").read_text()
    assert len(text.splitlines()) <= 60, "the overlay should stay a short list of overrides"
    overlay = yaml.safe_load(text)
    assert set(overlay) - {"services"} <= {key for key in overlay if key.startswith("x-")}, (
        f"the overlay defines more than services and x- anchors: {sorted(overlay)}"
    )
    assert set(overlay["services"]) == {"web", "worker"}
    allowed = {"image", "build", "init", "volumes", "command", "environment", "ports"}
    for name, service in overlay["services"].items():
        assert set(service) <= allowed, f"{name} overrides more than debugging needs: {sorted(service)}"
        assert service["build"] == {"target": "debug"}, f"{name}: the build must only change the target"
        assert "APP_DEBUG_IMAGE" in service["image"]
        assert set(service["environment"]) <= {
            "DJANGO_DEBUG",
            "DEBUGPY_PORT",
            "DEBUGPY_WAIT",
            "WATCHFILES_FORCE_POLLING",
        }, service["environment"]
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"

    merged = json.loads(compose_plain("config", "--format", "json").stdout)["services"]
    assert set(merged) == {"postgres", "redis", "secret-files", "migrate", "web", "worker", "beat", "flower"}
    for name, port in (("web", 5678), ("worker", 5679)):
        service = merged[name]
        assert service["build"]["target"] == "debug"
        assert service["image"] == "djcelery-stack-app:debug"
        assert service["command"] == [f"start-{name}-debug"]
        assert any(
            v["type"] == "bind" and v["target"] == "/app" and v["source"] == str(ROOT / "services")
            for v in service["volumes"]
        ), service["volumes"]
        assert {"target": port, "host_ip": "127.0.0.1"}.items() <= next(
            p for p in service["ports"] if p["target"] == port
        ).items()
        # The overlay's environment is merged into the base one, not put in its place.
        assert service["environment"]["DJANGO_DEBUG"] == "true"
        assert service["environment"]["JOB_ID_SECRET_FILE"] == "/run/app-secrets/JOB_ID_SECRET"
        assert service["environment"]["DEBUGPY_WAIT"] == "false"
        assert "healthcheck" in service and "migrate" in service["depends_on"]
    for name in ("migrate", "beat", "flower"):
        assert merged[name]["build"]["target"] == "runtime"
        assert merged[name]["image"] == "djcelery-stack-app:latest"
        assert not any(v.get("target") == "/app" for v in merged[name].get("volumes", []))
    assert merged["redis"]["image"] == "redis:5.0-alpine"
    assert merged["postgres"]["image"] == "postgres:17"


def test_vscode_launch_configs_attach_to_the_overlay_ports_with_the_right_mapping():
    overlay = yaml.safe_load((ROOT / "docker-compose.debug.yml").read_text())["services"]
    configs = launch_configs()
    for service, port in (("web", 5678), ("worker", 5679)):
        config = configs[f"Attach to {service} (debugpy)"]
        assert (config["type"], config["request"]) == ("debugpy", "attach")
        assert config["connect"] == {"host": "127.0.0.1", "port": port}
        assert f"127.0.0.1:${{{service.upper()}_DEBUGPY_PORT:-{port}}}:{port}" in overlay[service]["ports"]
        assert config["pathMappings"] == [
            {"localRoot": "${workspaceFolder}/services", "remoteRoot": REMOTE_ROOT}
        ]
        assert f"${{DEBUG_SOURCE_DIR:-./services}}:{REMOTE_ROOT}" in overlay[service]["volumes"]
        assert config["justMyCode"] is False
    assert [sorted(c["configurations"]) for c in launch_json()["compounds"]] == [
        ["Attach to web (debugpy)", "Attach to worker (debugpy)"]
    ]


# --- 1. the overlay stack comes up --------------------------------------------------------------


def test_overlay_stack_is_healthy_with_debug_image_on_web_and_worker(debug_stack, source_dir):
    debug_stack.wait_healthy()
    state = debug_stack.state()
    for name in LONG_RUNNING:
        for row in state[name]:
            assert (row["State"], row["Health"]) == ("running", "healthy"), row
    assert state.get("migrate"), "the migrate one-shot never ran"
    for row in state["migrate"]:
        assert (row["State"], row["ExitCode"]) == ("exited", 0), row

    debug_image, app_image = DEBUG_ENV["APP_DEBUG_IMAGE"], DEBUG_ENV["APP_IMAGE"]
    assert image_id(debug_image) != image_id(app_image)
    for name in ("web", "worker"):
        info = container(debug_stack, name)
        assert info["Config"]["Image"] == debug_image and info["Image"] == image_id(debug_image)
        assert "DJANGO_DEBUG=true" in info["Config"]["Env"]
        mounts = [m for m in info["Mounts"] if m["Destination"] == REMOTE_ROOT]
        assert mounts and mounts[0]["Type"] == "bind" and Path(mounts[0]["Source"]) == source_dir, mounts
        port = DEBUGPY_PORTS[name]
        internal = 5678 if name == "web" else 5679
        assert info["NetworkSettings"]["Ports"][f"{internal}/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(port)}
        ]
        # The debug target has the debugger and the reloader; the runtime image does not.
        assert debug_stack.exec(name, "python", "-c", "import debugpy, watchfiles").returncode == 0
    for name in ("beat", "flower"):
        info = container(debug_stack, name)
        assert info["Config"]["Image"] == app_image and info["Image"] == image_id(app_image)
        assert not any(m["Destination"] == REMOTE_ROOT for m in info["Mounts"])
    assert debug_stack.exec("beat", "python", "-c", "import debugpy", check=False).returncode != 0

    # web serves from the mounted source under Django's development server; Flower still
    # guards its dashboard.
    assert web_index(debug_stack)["jobs"] == "/api/jobs/"
    commands = {name: list(debuggee_processes(debug_stack, name).values()) for name in ("web", "worker")}
    assert len(commands["web"]) == 1 and "manage.py runserver" in commands["web"][0], commands
    assert len(commands["worker"]) == 1 and "--pool=solo" in commands["worker"][0], commands
    assert requests.get(debug_stack.flower_url("/"), timeout=10).status_code == 401
    assert requests.get(debug_stack.flower_url("/"), auth=FLOWER_AUTH, timeout=10).status_code == 200


# --- 2. code reload -----------------------------------------------------------------------------


def test_editing_a_view_changes_the_answer_without_a_restart_command(debug_stack, source_dir):
    urls = source_dir / "config" / "urls.py"
    started_at = container(debug_stack, "web")["State"]["StartedAt"]
    before = markers(debug_stack, "web", "worker")
    assert "edited" not in web_index(debug_stack)
    stamp = unique("view")
    original = edit(urls, "return JsonResponse({", f'return JsonResponse({{"edited": "{stamp}", ')
    try:
        body = wait_until(
            lambda: (b := web_index(debug_stack)).get("edited") == stamp and b,
            timeout=RELOAD_TIMEOUT,
            interval=0.5,
            what="web to answer with the edited view",
        )
        assert body["jobs"] == "/api/jobs/"
        before = wait_restarted(debug_stack, before, "the view edit")  # the worker reloads too
    finally:
        urls.write_text(original)
    wait_until(
        lambda: "edited" not in web_index(debug_stack),
        timeout=RELOAD_TIMEOUT,
        interval=0.5,
        what="web to answer with the restored view",
    )
    wait_restarted(debug_stack, before, "restoring the view")
    # The reloads happened inside the running container: it was never restarted.
    info = container(debug_stack, "web")
    assert (info["State"]["StartedAt"], info["RestartCount"]) == (started_at, 0)


def test_editing_a_task_changes_the_next_jobs_result(debug_stack, source_dir, debug_api):
    tasks = source_dir / "jobs" / "tasks.py"
    started_at = container(debug_stack, "worker")["State"]["StartedAt"]
    job_id = submit(debug_api, "noop")
    assert debug_api.wait_for_state(job_id, "SUCCESS", timeout=60)["result"] == {}

    _, line = function_line(tasks, "noop", "return")
    assert line.strip() == "return {}", line
    before = markers(debug_stack, "web", "worker")
    original = edit(tasks, line + "\n", line.replace("return {}", 'return {"edited": True}') + "\n")
    try:
        before = wait_restarted(debug_stack, before, "the task edit")
        job_id = submit(debug_api, "noop")
        assert debug_api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=60)["result"] == {
            "edited": True
        }
    finally:
        tasks.write_text(original)
    wait_restarted(debug_stack, before, "restoring the task")
    job_id = submit(debug_api, "noop")
    assert debug_api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=60)["result"] == {}
    info = container(debug_stack, "worker")
    assert (info["State"]["StartedAt"], info["RestartCount"]) == (started_at, 0)


# --- 3. non-Python changes do not restart anything ---------------------------------------------


def test_non_python_changes_do_not_restart_the_worker(debug_stack, source_dir):
    wait_ready(debug_stack, "web", "worker")
    detected = log_count(debug_stack, "worker", "change detected")

    # Control: a Python change IS seen by the same probe (so the probe can fail), and tells how
    # long a reload takes to show on this machine right now.
    before = markers(debug_stack, "web", "worker")
    control = source_dir / "jobs" / "reload_control.py"
    edited_at = time.monotonic()
    control.write_text(f"# a control edit: any .py change reloads ({uuid.uuid4().hex})\n")
    restarted = {}
    for service, marker in before.items():
        restarted[service] = wait_until(
            lambda: (m := debuggee(debug_stack, service)) and m != marker and m,
            timeout=RELOAD_TIMEOUT,
            interval=0.5,
            what=f"{service} to restart after the control edit",
        )
    reaction = time.monotonic() - edited_at
    wait_ready(debug_stack, "web", "worker")
    assert log_count(debug_stack, "worker", "change detected") > detected
    detected = log_count(debug_stack, "worker", "change detected")

    # Uploads, logs, notes, static files: none of these may restart anything.
    (source_dir / "jobs" / "notes.txt").write_text("a note next to the code\n")
    css = source_dir / "jobs" / "static" / "jobs" / "pages.css"
    css.write_text(css.read_text() + "\n/* edited by the debug overlay tests */\n")
    for folder, name in (("media", "upload.bin"), ("logs", "app.log")):
        (source_dir / folder).mkdir(exist_ok=True)
        (source_dir / folder / name).write_bytes(os.urandom(256))
    # Watch for several times what the control took (which includes the probe's own latency).
    quiet = min(max(5.0, 3 * reaction), 20.0)
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:  # watch for the whole window: fail at the first restart
        for service, marker in restarted.items():
            assert debuggee(debug_stack, service) == marker, (
                f"{service} restarted after a non-Python change (watched for {quiet:.1f}s)"
            )
        time.sleep(0.5)
    assert log_count(debug_stack, "worker", "change detected") == detected
    assert worker_ready(debug_stack)


# --- 4. debugpy: the Debug Adapter Protocol on both ports ----------------------------------------


@pytest.mark.parametrize("service", ["web", "worker"])
def test_debugpy_port_answers_dap_initialize(debug_stack, service):
    port = DEBUGPY_PORTS[service]

    def initialized():
        with DapClient("127.0.0.1", port) as client:
            capabilities = client.initialize()
            client.disconnect()
            return capabilities

    capabilities = wait_until(initialized, timeout=60, interval=1, what=f"DAP initialize on port {port}")
    assert capabilities["supportsConfigurationDoneRequest"] is True
    assert capabilities["supportsConditionalBreakpoints"] is True
    assert "uncaught" in {f["filter"] for f in capabilities["exceptionBreakpointFilters"]}


def test_breakpoint_in_a_task_is_hit_when_the_job_runs(debug_stack, source_dir, debug_api):
    wait_ready(debug_stack, "worker")
    worker_before = debuggee(debug_stack, "worker")
    tasks = source_dir / "jobs" / "tasks.py"
    line, _ = function_line(tasks, "noop", "return")
    options = attach_options("worker", source_dir)

    with connected("127.0.0.1", DEBUGPY_PORTS["worker"]) as client:
        reported = client.attach({str(tasks): [line]}, **options)
        assert [bp["line"] for bp in reported[str(tasks)]] == [line], reported

        job_id = submit(debug_api, "noop")
        stopped = client.wait_stopped("breakpoint", timeout=60)["body"]
        frame = client.top_frame(stopped["threadId"])
        assert (frame["source"]["path"], frame["line"], frame["name"]) == (str(tasks), line, "noop"), frame
        # The job is held at the breakpoint: started, not finished.
        assert debug_api.job(job_id).json()["state"] in ("STARTED", "PROGRESS")

        client.request("continue", {"threadId": stopped["threadId"]})
        assert debug_api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=60)["state"] == "SUCCESS"
        client.disconnect(terminate_debuggee=False)

    # Detaching left the worker running, in the same process, still taking jobs.
    assert debuggee(debug_stack, "worker") == worker_before
    job_id = submit(debug_api, "noop")
    assert debug_api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=60)["state"] == "SUCCESS"


def test_breakpoint_in_a_view_is_hit_on_request(debug_stack, source_dir):
    wait_ready(debug_stack, "web")
    web_before = debuggee(debug_stack, "web")
    urls = source_dir / "config" / "urls.py"
    line, _ = function_line(urls, "index", "return")
    options = attach_options("web", source_dir)
    answers: list = []

    def get_index():
        try:
            answers.append(requests.get(debug_stack.url("/"), timeout=120))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers.append(exc)

    with connected("127.0.0.1", DEBUGPY_PORTS["web"]) as client:
        reported = client.attach({str(urls): [line]}, **options)
        assert [bp["line"] for bp in reported[str(urls)]] == [line], reported

        request = threading.Thread(target=get_index, daemon=True)
        request.start()
        stopped = client.wait_stopped("breakpoint", timeout=60)["body"]
        frame = client.top_frame(stopped["threadId"])
        assert (frame["source"]["path"], frame["line"], frame["name"]) == (str(urls), line, "index"), frame
        assert request.is_alive() and not answers, "the request was answered while the view was paused"

        client.request("continue", {"threadId": stopped["threadId"]})
        request.join(timeout=60)
        client.disconnect(terminate_debuggee=False)

    assert answers, "the paused request never finished"
    assert not isinstance(answers[0], Exception), answers[0]
    assert answers[0].status_code == 200 and answers[0].json()["jobs"] == "/api/jobs/"
    assert debuggee(debug_stack, "web") == web_before
    assert web_ready(debug_stack)
