"""Production mode on one host (issue 5), on a real compose stack of its own.

The stack runs the shipped docker-compose.yml with the variables of a .env that
scripts/gen-prod-env writes (APP_ENV=production, random secrets), on its own project name, host
ports and image tag, so it runs beside every other e2e module. The tests run in file order:
first the refusals (a default secret left), then the stack up with the generated secrets, then
what must hold in it. Talking to web, the tests act as the reverse proxy of docs/production.md:
plain HTTP to 127.0.0.1, `X-Forwarded-Proto: https` and a Host from DJANGO_ALLOWED_HOSTS.
"""

import json
import os
import re
import stat
import subprocess
import uuid

import pytest
import requests

from tests.e2e.helpers import contains_secret
from tests.support.docker import docker
from tests.support.production import (
    APP_ROLES,
    DEV_WARNING,
    LINT_ACCEPTED,
    LINTED_FILES,
    SECRET_NAMES,
    SERVICE_SECRET_NAMES,
    Redacted,
    accepting_entry,
    compose_lint,
    finding_key,
    gen_prod_env,
    load_accepted,
    proxy_session,
    read_env_file,
    secrets_in_image,
)
from tests.support.stack import ROOT, Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("PROD_E2E_PROJECT", "djcs-prod")
HOST = "jobs.prod-e2e.test"
ADMIN_PATH = "control-room-e2e/"
BASE_ENV = {
    "APP_IMAGE": os.environ.get("PROD_E2E_APP_IMAGE", f"{PROJECT}-app:latest"),
    "WEB_PORT": os.environ.get("PROD_E2E_WEB_PORT", "26000"),
    "FLOWER_PORT": os.environ.get("PROD_E2E_FLOWER_PORT", "26555"),
    "DJANGO_ADMIN_PATH": ADMIN_PATH,
}
UP_TIMEOUT = 300
REFUSAL = "APP_ENV=production refuses to start"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The production .env written by scripts/gen-prod-env: (path, variables, what it printed)."""
    path = tmp_path_factory.mktemp("prod") / "prod.env"
    values, printed = gen_prod_env(path, HOST)
    return path, values, printed


@pytest.fixture(scope="module")
def secrets(generated) -> dict[str, str]:
    _, values, _ = generated
    return Redacted({name: values[name] for name in (*SECRET_NAMES, *SERVICE_SECRET_NAMES)})


@pytest.fixture(scope="module")
def prod(generated):
    _, values, _ = generated
    # Built, not started: the first tests start it with secrets missing on purpose.
    with running(Stack(project=PROJECT, env={**BASE_ENV, **values}), up=False) as stack:
        yield stack


@pytest.fixture(scope="module")
def prod_up(prod):
    """The production stack, up and healthy (the test that brings it up is the first user)."""
    if not prod.healthy():
        prod.up(timeout=UP_TIMEOUT)
    return prod


@pytest.fixture(scope="module")
def proxy():
    return proxy_session(HOST)


def web(stack, session: requests.Session, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("allow_redirects", False)
    return session.get(stack.url(path), **kwargs)


def refused_variables(logs: str) -> list[str]:
    """The variables the production refusal lists ("  - NAME is empty, ..." lines)."""
    assert REFUSAL in logs, logs[-3000:]
    return re.findall(r"\s- ([A-Z][A-Z_]+) (?:is|must) ", logs[logs.index(REFUSAL) :])


# --- the generator and the compose files -----------------------------------------------------------


def test_gen_prod_env_writes_strong_secrets_readable_only_by_owner(generated, secrets):
    path, values, printed = generated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert values["APP_ENV"] == "production"
    assert values["DJANGO_ALLOWED_HOSTS"] == HOST
    assert values["DJANGO_CSRF_TRUSTED_ORIGINS"] == f"https://{HOST}"
    assert values["WEB_BIND"] == "127.0.0.1"
    for name, value in secrets.items():
        assert len(value) >= 24 and "insecure-dev" not in value, name
        assert value not in printed, f"gen-prod-env printed the value of {name}"
    assert len(set(secrets.values())) == len(secrets), "two secrets share a value"
    # A second run never overwrites a production .env silently.
    rerun = subprocess.run(
        [str(ROOT / "scripts" / "gen-prod-env"), "--host", HOST, "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode != 0 and "--force" in rerun.stderr
    assert {name: read_env_file(path)[name] for name in secrets} == secrets


def test_compose_lint_leaves_no_unexplained_high_finding():
    report = compose_lint(*LINTED_FILES)
    assert not report["errors"], f"compose-lint could not lint everything: {report['errors']}"
    linted = {finding["file"] for finding in report["findings"]}
    assert set(LINTED_FILES) >= linted and "docker-compose.yml" in linted, linted
    accepted = load_accepted()
    high = [f for f in report["findings"] if f["severity"] in ("high", "critical")]
    unexplained = [
        f"{f['file']}:{f['line']} {f['service']} {f['rule_id']} ({f['severity']}): {f['message'][:160]}"
        for f in high
        if not accepting_entry(f, accepted)
    ]
    assert not unexplained, (
        f"high-severity compose-lint findings neither fixed nor explained in "
        f"{LINT_ACCEPTED.relative_to(LINT_ACCEPTED.parents[1])}:\n  " + "\n  ".join(unexplained)
    )
    # Every acceptance still stands for a finding, for each service it names.
    for entry in accepted:
        for service in entry["services"]:
            assert any(
                f["rule_id"] == entry["rule"]
                and f["file"] == entry["file"]
                and f["service"] == service
                and entry.get("key") in (None, finding_key(f))
                for f in high
            ), f"stale acceptance (nothing to accept any more): {entry} / {service}"


# --- 1. a default secret left: the service that needs it refuses to start -----------------------


def test_default_django_secret_key_stops_migrate_naming_it(prod):
    weak = prod.without("DJANGO_SECRET_KEY")  # docker-compose.yml's insecure-dev default applies
    # Up web, as a deploy does: compose starts web only once migrate has completed successfully.
    # (`up --wait migrate` alone would not do: migrate has no healthcheck, so --wait counts it
    # ready as soon as it runs, before it has had time to refuse.)
    up = weak.compose(
        "up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT), "web", check=False, timeout=UP_TIMEOUT + 60
    )
    assert up.returncode != 0, "up succeeded although migrate should have refused the dev secret"
    migrate = prod.inspect("migrate", all=True)
    assert migrate["State"]["Status"] == "exited" and migrate["State"]["ExitCode"] != 0, migrate["State"]
    logs = prod.logs("migrate")
    assert REFUSAL in logs, logs[-3000:]
    assert refused_variables(logs) == ["DJANGO_SECRET_KEY"], logs[-3000:]
    # Nothing that needs migrate ran: web was at most created, never started.
    for container in prod.container_ids("web", all=True):
        state = json.loads(docker("inspect", container).stdout)[0]["State"]
        assert state["Status"] == "created" and state["StartedAt"].startswith("0001-"), state
    # The next `up` restarts migrate rather than recreating it (its configuration names no secret):
    # removed, so that the refusal above is not in the logs of the stack the next tests start.
    prod.compose("rm", "--force", "migrate", "web")


@pytest.mark.parametrize("name", ["JOB_ID_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD"])
def test_each_other_default_secret_is_refused_by_name(prod, name):
    weak = prod.without(name)
    weak.compose("run", "--rm", "--no-deps", "-T", "secret-files", timeout=180)  # as `up` would first
    run = weak.compose("run", "--rm", "--no-deps", "migrate", check=False, timeout=180)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert REFUSAL in output, output[-3000:]
    assert refused_variables(output) == [name], output[-3000:]


@pytest.mark.parametrize("name", ["POSTGRES_ADMIN_PASSWORD", "POSTGRES_PASSWORD"])
def test_postgres_refuses_a_default_password_by_name(prod, name):
    # compose/postgres/start-postgres checks before it touches the data directory.
    run = prod.without(name).compose("run", "--rm", "--no-deps", "-T", "postgres", check=False, timeout=180)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert f"APP_ENV=production with the development default of {name}:" in output, output[-3000:]


def test_default_flower_password_stops_flower_naming_it(prod):
    weak = prod.without("FLOWER_PASSWORD")
    weak.compose("up", "-d", "flower", timeout=UP_TIMEOUT)  # starts migrate and redis first

    def failed():
        state = prod.inspect("flower", all=True)
        exited = state["State"]["Status"] in ("exited", "restarting") or state["RestartCount"] > 0
        return state if exited and state["State"]["ExitCode"] != 0 else None

    state = wait_until(failed, timeout=120, interval=1, what="flower to exit non-zero")
    assert state["State"]["ExitCode"] != 0
    logs = prod.logs("flower")
    assert REFUSAL in logs, logs[-3000:]
    assert set(refused_variables(logs)) == {"FLOWER_PASSWORD"}, logs[-3000:]
    assert not prod.healthy("flower")
    prod.compose("rm", "--stop", "--force", "flower")
    assert prod.inspect("migrate", all=True)["State"]["ExitCode"] == 0


def test_generated_env_brings_the_stack_up_healthy(prod):
    prod.up(timeout=UP_TIMEOUT)
    state = prod.state()
    for name in (*APP_ROLES, "postgres", "redis"):
        assert state.get(name), f"{name} has no container"
        for container in state[name]:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container
    assert [(c["State"], c["ExitCode"]) for c in state["migrate"]] == [("exited", 0)]
    assert REFUSAL not in prod.logs()


def test_web_behind_the_proxy_contract(prod_up, proxy):
    # As the proxy forwards an HTTPS request: served, with HSTS.
    home = web(prod_up, proxy, "/")
    assert home.status_code == 200, home.text[:500]
    assert home.json()["health"] == "/healthz"
    assert "max-age=" in home.headers["Strict-Transport-Security"]
    # Plain HTTP (no X-Forwarded-Proto): redirected to HTTPS on the public host.
    plain = web(prod_up, proxy_session(HOST, https=False), "/api/jobs/?page=2")
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/api/jobs/?page=2"
    # A Host outside DJANGO_ALLOWED_HOSTS is refused; DEBUG is off, so no debug page either.
    other = web(prod_up, proxy_session("attacker.example"), "/")
    assert other.status_code == 400
    assert "Traceback" not in other.text and "DisallowedHost" not in other.text
    missing = web(prod_up, proxy, "/no-such-page/")
    assert missing.status_code == 404 and "Traceback" not in missing.text
    # /healthz answers over plain HTTP inside the container (the healthcheck's way), no redirect.
    inside = prod_up.exec(
        "web",
        "python",
        "-c",
        "import urllib.request as u; r = u.urlopen('http://127.0.0.1:8000/healthz', "
        "timeout=10); print(r.status, r.read().decode())",
    )
    assert inside.stdout.startswith("200 ") and '"status": "ok"' in inside.stdout, inside.stdout
    prod_up.exec("web", "healthcheck-web")


def test_admin_static_and_api_with_debug_off(prod_up, proxy):
    admin = web(prod_up, proxy, f"/{ADMIN_PATH}")
    assert admin.status_code == 302
    assert admin.headers["Location"].startswith(f"/{ADMIN_PATH}login/")
    assert web(prod_up, proxy, "/admin/").status_code == 404, "the admin is at its default path too"
    login = web(prod_up, proxy, f"/{ADMIN_PATH}login/")
    assert login.status_code == 200
    cookies = login.raw.headers.getlist("Set-Cookie")
    assert any(cookie.startswith("csrftoken=") for cookie in cookies), cookies
    assert all("; secure" in cookie.lower() for cookie in cookies), cookies
    # Static files are served by whitenoise from the image with DEBUG off.
    css = web(prod_up, proxy, "/static/admin/css/base.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    # The API never answers without credentials.
    for path in ("/api/jobs/", f"/api/jobs/{uuid.uuid4()}/"):
        assert web(prod_up, proxy, path).status_code in (401, 403), path


# --- 2. check --deploy ----------------------------------------------------------------------------


def test_check_deploy_reports_no_issues(prod_up):
    result = prod_up.manage("check", "--deploy", "--fail-level", "WARNING", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


# --- 3. locked down -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", APP_ROLES)
def test_app_container_is_unprivileged_and_read_only(prod_up, role):
    assert prod_up.exec(role, "id", "-u").stdout.strip() not in ("", "0")
    write = prod_up.exec(role, "touch", "/x", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr, write.stderr
    # ...and the writable places are the ones meant to be (tmpfs /tmp).
    prod_up.exec(role, "sh", "-c", "echo ok > /tmp/write-test && rm /tmp/write-test")

    container = prod_up.inspect(role)
    host = container["HostConfig"]
    assert container["Config"]["User"] not in ("", "0", "root")
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] and [cap.upper() for cap in host["CapDrop"]] == ["ALL"]
    assert not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size")


def test_redis_is_unprivileged_and_every_log_is_rotated(prod_up):
    assert prod_up.exec("redis", "id", "-u").stdout.strip() not in ("", "0")
    redis = prod_up.inspect("redis")["HostConfig"]
    assert redis["ReadonlyRootfs"] is True and redis["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in redis["SecurityOpt"]
    for service in (*APP_ROLES, "migrate", "postgres", "redis"):
        log = prod_up.inspect(service, all=True)["HostConfig"]["LogConfig"]
        assert log["Type"] == "json-file", (service, log)
        assert log["Config"].get("max-size") and log["Config"].get("max-file"), (service, log)


def test_redis_and_postgres_are_not_published_on_the_host(prod_up):
    for service, port in (("redis", 6379), ("postgres", 5432)):
        container = prod_up.inspect(service)
        bindings = container["HostConfig"]["PortBindings"]
        assert not any(bindings.values()), f"{service} asks for host ports: {bindings}"
        published = {
            name: bindings for name, bindings in container["NetworkSettings"]["Ports"].items() if bindings
        }
        assert not published, f"{service} publishes {published}"
        answer = prod_up.compose("port", service, str(port), check=False)
        host_port = answer.stdout.strip().rpartition(":")[2]
        assert answer.returncode != 0 or host_port in ("", "0"), f"{service}: {answer.stdout!r}"
    # Only web and flower publish anything, and only on 127.0.0.1.
    for service in ("web", "flower", "worker", "beat"):
        ports = prod_up.inspect(service)["NetworkSettings"]["Ports"]
        bindings = [binding for value in ports.values() if value for binding in value]
        assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings), (service, bindings)
        assert bool(bindings) == (service in ("web", "flower")), (service, bindings)


def test_redis_and_postgres_require_their_passwords(prod_up):
    without = prod_up.exec("redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping", check=False)
    assert "NOAUTH" in without.stdout + without.stderr, without
    wrong = prod_up.exec(
        "redis",
        "env",
        "-u",
        "REDISCLI_AUTH",
        "redis-cli",
        "--no-auth-warning",
        "-a",
        "not-the-password",
        "ping",
        check=False,
    )
    assert "PONG" not in wrong.stdout, wrong
    assert re.search(r"NOAUTH|invalid|WRONGPASS", wrong.stdout + wrong.stderr), wrong
    assert prod_up.exec("redis", "redis-cli", "--no-auth-warning", "ping").stdout.strip() == "PONG"
    # From another container on the stack's network, as any client would connect.
    probe = prod_up.exec(
        "web",
        "python",
        "-c",
        """
import psycopg, redis
try:
    redis.Redis(host="redis", socket_timeout=5).ping(); print("redis: open")
except redis.exceptions.AuthenticationError as exc:
    print("redis: refused", exc)
for password in ("", "not-the-password"):
    try:
        psycopg.connect(host="postgres", dbname="app", user="app", password=password, connect_timeout=5)
        print("postgres: open")
    except psycopg.OperationalError as exc:
        print("postgres: refused", str(exc).splitlines()[0])
""",
    )
    out = probe.stdout
    assert "open" not in out, out
    assert "redis: refused" in out and out.count("postgres: refused") == 2, out
    assert "password authentication failed" in out, out


def test_the_apps_postgres_role_is_no_superuser_and_owns_only_its_database(prod_up, generated):
    _, values, _ = generated
    # Over the app's own connection (its settings, its password), as every app role connects.
    probe = prod_up.exec(
        "web",
        "python",
        "-c",
        """
import json, django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
                   " FROM pg_roles WHERE rolname = current_user")
    role = cursor.fetchone()
    cursor.execute("SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)")
    owned = sorted(row[0] for row in cursor.fetchall())
    cursor.execute("SELECT count(*), count(*) FILTER (WHERE c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user))"
                   " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                   " AND c.relkind IN ('r', 'S', 'v')")
    relations, foreign = cursor.fetchone()
    refused = []
    for statement in ("ALTER ROLE current_user SUPERUSER", "CREATE DATABASE other", "CREATE ROLE other"):
        try:
            with connection.cursor() as attempt:
                attempt.execute(statement)
        except Exception as exc:
            refused.append(type(exc).__name__)
print(json.dumps({"role": role, "owned": owned, "relations": relations, "foreign": foreign, "refused": refused}))
""",
    )
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["role"] == [values.get("POSTGRES_USER", "app"), False, False, False, False, False], found
    assert found["owned"] == [values.get("POSTGRES_DB", "app")], found
    assert found["relations"] > 10 and found["foreign"] == 0, found  # the migrations' tables are its own
    assert len(found["refused"]) == 3, found
    # `\du` as the administrator, with its password over TCP: the superuser is someone else.
    roles = prod_up.exec(
        "postgres",
        "sh",
        "-c",
        'PGPASSWORD="$POSTGRES_ADMIN_PASSWORD" psql -h 127.0.0.1 -U "$POSTGRES_ADMIN_USER" -d postgres '
        '--no-password -c "\\du"',
    ).stdout
    lines = {line.split("|")[0].strip(): line for line in roles.splitlines() if "|" in line}
    app, admin = values.get("POSTGRES_USER", "app"), values.get("POSTGRES_ADMIN_USER", "postgres")
    assert app in lines and "Superuser" not in lines[app], roles
    assert admin in lines and "Superuser" in lines[admin], roles
    assert [name for name, line in lines.items() if "Superuser" in line] == [admin], roles
    # From an app container, the app's password does not open the administrator's account.
    wrong = prod_up.exec(
        "web",
        "python",
        "-c",
        f"""
import psycopg
from django.conf import settings
import django
django.setup()
try:
    psycopg.connect(host="postgres", dbname="postgres", user={admin!r},
                    password=settings.DATABASES["default"]["PASSWORD"], connect_timeout=5)
    print("admin: open")
except psycopg.OperationalError as exc:
    print("admin: refused", str(exc).splitlines()[0])
""",
    ).stdout
    assert "admin: refused" in wrong and "password authentication failed" in wrong, wrong


def test_flower_is_on_loopback_and_needs_its_credentials(prod_up, secrets):
    user = prod_up.env["FLOWER_USER"]
    bindings = prod_up.inspect("flower")["NetworkSettings"]["Ports"]["5555/tcp"]
    assert bindings and all(binding["HostIp"] == "127.0.0.1" for binding in bindings), bindings
    right = (user, secrets["FLOWER_PASSWORD"])

    def get(path, auth):
        return requests.get(prod_up.flower_url(path), auth=auth, timeout=30)

    for path in ("/", "/metrics", "/api/workers", "/api/tasks", "/tasks", "/workers"):
        assert get(path, None).status_code == 401, path
        assert get(path, (user, "not-the-password")).status_code == 401, path
        assert get(path, ("root", secrets["FLOWER_PASSWORD"])).status_code == 401, path
    assert wait_until(lambda: get("/", right).status_code == 200, timeout=60, what="flower with login")
    metrics = get("/metrics", right)
    assert metrics.status_code == 200 and "flower_" in metrics.text
    assert get("/healthcheck", None).text.strip() == "OK"  # the healthcheck's only open page


# --- 4. no secret in the image --------------------------------------------------------------------


def test_no_secret_in_the_app_image(prod_up, secrets):
    image = prod_up.env["APP_IMAGE"]
    for role in APP_ROLES:  # the running stack uses the image that is scanned
        assert prod_up.inspect(role)["Config"]["Image"] == image
    found, scanned = secrets_in_image(image, secrets)
    assert scanned > 1000, f"only {scanned} files scanned in {image}"
    assert not found, f"secrets baked into {image}: {found[:20]}"


# --- what a token may do in production ----------------------------------------------------------


def test_example_kinds_are_off_unless_named(prod_up, proxy):
    api = Api(prod_up.url(""), prod_up.create_token(f"prod-kinds-{uuid.uuid4().hex[:8]}"))
    api.session.headers.update(proxy.headers)
    refused = api.submit("allocate", {"megabytes": 1})
    assert refused.status_code == 400, refused.text
    assert "JOB_DEMO_KINDS" in refused.json()["kind"][0]
    # The kinds this stack's .env names in JOB_DEMO_KINDS (tests/support/production.py) run.
    assert api.submit("noop").status_code == 202


def test_a_token_over_its_submission_rate_is_answered_429(prod_up, proxy):
    # The default rate, 600 submissions a minute per token (counted per calendar minute): 1,300
    # sent within a minute put more than 600 into one of the minutes they span.
    api = Api(prod_up.url(""), prod_up.create_token(f"prod-rate-{uuid.uuid4().hex[:8]}"))
    api.session.headers.update(proxy.headers)
    accepted, refused = 0, None
    for _ in range(1300):
        answer = api.request("POST", "/api/jobs/", json={"kind": "noop"})
        if answer.status_code == 429:
            refused = answer
            break
        assert answer.status_code == 202, answer.text
        accepted += 1
    assert refused is not None, f"{accepted} submissions and no 429"
    assert accepted <= 1200, accepted
    body = refused.json()
    assert body["error"] == "rate_limited" and 0 < int(refused.headers["Retry-After"]) <= 60, body
    # Another token is not held back by this one's count.
    other = Api(prod_up.url(""), prod_up.create_token(f"prod-rate-{uuid.uuid4().hex[:8]}"))
    other.session.headers.update(proxy.headers)
    assert other.submit("noop").status_code == 202


# --- 5. no token and no secret in any log --------------------------------------------------------


def test_full_job_run_leaves_no_token_or_secret_in_any_log(prod_up, secrets, proxy):
    token = prod_up.create_token(f"prod-e2e-{uuid.uuid4().hex[:8]}")
    api = Api(prod_up.url(""), token)
    api.session.headers.update(proxy.headers)
    submitted = api.submit("model_inference", {"text": "production", "steps": 3, "step_seconds": 0.3})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    api.wait_for_state(job_id, "PROGRESS", "SUCCESS", timeout=120)
    done = api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=120)
    assert done["state"] == "SUCCESS", done
    assert api.request("GET", "/api/jobs/").json()["count"] >= 1

    # Flower followed the job too, so its logs had the chance to show whatever it saw.
    flower_auth = (prod_up.env["FLOWER_USER"], secrets["FLOWER_PASSWORD"])
    wait_until(
        lambda: job_id in requests.get(prod_up.flower_url("/api/tasks"), auth=flower_auth, timeout=30).text,
        timeout=60,
        interval=1,
        what="Flower listing the job",
    )

    logs = prod_up.logs()
    services = {line.split(" ", 1)[0].rsplit("-", 1)[0] for line in logs.splitlines() if " | " in line}
    assert {"web", "worker", "beat", "flower", "postgres", "redis", "migrate"} <= services, services
    assert job_id in logs, "the job left no trace in the logs: nothing was checked"
    for name, value in {"the API token": token, **secrets}.items():
        assert not contains_secret(logs, value), f"{name} is in the container logs"


def test_no_secret_on_any_process_command_line(prod_up, secrets):
    """Secrets travel in environment variables and files, never in argv (which `ps` shows)."""
    listing = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\" 2>/dev/null; echo; done"
    for service in (*APP_ROLES, "redis", "postgres"):
        commands = prod_up.exec(service, "sh", "-c", listing).stdout
        assert len(commands.split()) > 2, f"no process listed in {service}: {commands!r}"
        for name, value in secrets.items():
            assert value not in commands, f"{name} is on a command line in {service}"


def test_no_secret_value_in_docker_inspect_of_any_app_container(prod_up, secrets):
    inspected = {}
    for role in (*APP_ROLES, "migrate"):
        for container in prod_up.container_ids(role, all=True):
            inspected[f"{role} {container[:12]}"] = docker("inspect", container).stdout
    assert {name.split()[0] for name in inspected} == {*APP_ROLES, "migrate"}, list(inspected)
    shown = {
        where: [name for name, value in secrets.items() if value in text] for where, text in inspected.items()
    }
    assert not any(shown.values()), f"secret values in docker inspect: {shown}"


# --- the development warning ----------------------------------------------------------------------


def test_dev_secrets_warning_only_without_production_env(prod_up, generated):
    _, values, _ = generated
    assert DEV_WARNING not in prod_up.logs(), "the production stack warns about development secrets"
    # The same compose file with no .env at all: the app containers say they run on dev secrets.
    # A project of its own: its secret-files writes the development values into its own volume.
    dev = Stack(project=f"{PROJECT}-dev", env=dict(BASE_ENV), unset=tuple(values))
    try:
        dev.compose("run", "--rm", "--no-deps", "-T", "secret-files", timeout=180)
        for role, expected in (("web", SECRET_NAMES[:4]), ("flower", SECRET_NAMES)):
            run = dev.compose(
                "run",
                "--rm",
                "--no-deps",
                "-T",
                role,
                "python",
                "-c",
                "import django; django.setup()",
                timeout=180,
            )
            output = run.stdout + run.stderr
            warning = next((line for line in output.splitlines() if DEV_WARNING in line), None)
            assert warning, f"{role} gave no dev-secrets warning:\n{output[-2000:]}"
            assert all(name in warning for name in expected), warning
    finally:
        dev.down()


# --- a volume made before the admin/app split -----------------------------------------------------


def test_volume_whose_superuser_was_the_apps_role_is_converted_on_up(prod, generated):
    """A data volume initialised as docker-compose.yml did before the split (the image's first role,
    the bootstrap superuser, was the app's POSTGRES_USER): `up` renames that role to the
    administrator's, the app's role is an ordinary one again, owns what it had, and the app works."""
    _, values, _ = generated
    volume = f"{PROJECT}-legacy_postgres-data"
    legacy = Stack(
        project=f"{PROJECT}-legacy",
        env={
            **BASE_ENV,
            **values,
            "POSTGRES_VOLUME_NAME": volume,
            "WEB_PORT": os.environ.get("PROD_E2E_LEGACY_WEB_PORT", "26010"),
            "FLOWER_PORT": os.environ.get("PROD_E2E_LEGACY_FLOWER_PORT", "26565"),
        },
    )
    old = f"{PROJECT}-legacy-init"
    legacy.down()
    docker("rm", "-f", old, check=False)
    docker("volume", "rm", "-f", volume)
    try:
        docker(
            "run",
            "-d",
            "--name",
            old,
            "-v",
            f"{volume}:/var/lib/postgresql/data",
            "-e",
            "POSTGRES_USER=app",
            "-e",
            "POSTGRES_DB=app",
            "-e",
            f"POSTGRES_PASSWORD={values['POSTGRES_PASSWORD']}",
            os.environ.get("POSTGRES_IMAGE", "postgres:17"),
        )
        # Over TCP only once initialisation is over (the image listens on its socket only before).
        wait_until(
            lambda: docker("exec", old, "pg_isready", "-h", "127.0.0.1", check=False).returncode == 0,
            timeout=120,
            interval=1,
            what="the old-layout PostgreSQL",
        )
        docker(
            "exec",
            old,
            "psql",
            "-U",
            "app",
            "-d",
            "app",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE legacy (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text);"
            " INSERT INTO legacy (note) VALUES ('kept')",
        )
        before = docker(
            "exec",
            old,
            "psql",
            "-U",
            "app",
            "-d",
            "app",
            "-tA",
            "-c",
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'",
        ).stdout.strip()
        assert before == "t", before  # the layout being converted
        docker("stop", old)
        docker("rm", old)

        legacy.up("web", timeout=UP_TIMEOUT)
        assert "renaming the bootstrap superuser app to postgres" in legacy.logs("postgres")
        roles = legacy.exec(
            "postgres",
            "sh",
            "-c",
            'psql -U "$POSTGRES_ADMIN_USER" -d "$POSTGRES_DB" -tA -c '
            '"SELECT rolname, rolsuper FROM pg_roles WHERE rolcanlogin ORDER BY 1" '
            "-c \"SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'\"",
        ).stdout.split()
        assert roles == ["app|f", "postgres|t", "app"], roles
        # The app connects with its password, migrated, reads what the old role wrote, and serves.
        read = (
            legacy.exec(
                "web",
                "python",
                "-c",
                """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("INSERT INTO legacy (note) VALUES ('new') RETURNING id")
    cursor.execute("SELECT string_agg(note, ',' ORDER BY id) FROM legacy")
    print(cursor.fetchone()[0])
""",
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        assert read == "kept,new", read
        assert legacy.inspect("migrate", all=True)["State"]["ExitCode"] == 0
        health = web(legacy, proxy_session(HOST), "/healthz")
        assert health.status_code == 200, health.text[:500]
    finally:
        legacy.save_logs("final")
        legacy.down()
        docker("rm", "-f", old, check=False)
        docker("volume", "rm", "-f", volume, check=False)
