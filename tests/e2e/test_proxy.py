"""The HTTPS proxy overlay (docker-compose.proxy.yml, issue 13 must-show 1) on a production stack.

The stack is docker-compose.yml + docker-compose.proxy.yml with a .env from
`scripts/gen-prod-env --host localhost`, Caddy's internal CA (PROXY_TLS=internal) and Flower under
/flower/ (FLOWER_URL_PREFIX), on its own project name and ports (published on 127.0.0.1 only).
Every request goes through Caddy, verified against the root certificate of Caddy's own CA.
"""

import os
import re
import uuid

import pytest
import requests

from tests.e2e.helpers import caddy_version
from tests.support.production import gen_prod_env
from tests.support.stack import Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("PROXY_E2E_PROJECT", "djcs-proxy")
HOST = "localhost"
HTTP_PORT = int(os.environ.get("PROXY_E2E_HTTP_PORT", "29380"))
HTTPS_PORT = int(os.environ.get("PROXY_E2E_HTTPS_PORT", "29343"))
BASE_ENV = {
    "APP_IMAGE": os.environ.get("PROXY_E2E_APP_IMAGE", f"{PROJECT}-app:latest"),
    "WEB_PORT": os.environ.get("PROXY_E2E_WEB_PORT", "29300"),
    "FLOWER_PORT": os.environ.get("PROXY_E2E_FLOWER_PORT", "29355"),
    "PROXY_BIND": "127.0.0.1",
    "PROXY_HTTP_PORT": str(HTTP_PORT),
    "PROXY_HTTPS_PORT": str(HTTPS_PORT),
    "PROXY_TLS": "internal",
    "FLOWER_URL_PREFIX": "flower",
}
SPOOFED = "203.0.113.77"
SEEN: dict[str, str] = {}  # what one test leaves for a later one (file order)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    values, _ = gen_prod_env(tmp_path_factory.mktemp("proxy") / "prod.env", HOST)
    env = {**BASE_ENV, **values}
    if "CADDY_IMAGE" in os.environ:
        env["CADDY_IMAGE"] = os.environ["CADDY_IMAGE"]
    with running(
        Stack(project=PROJECT, files=("docker-compose.yml", "docker-compose.proxy.yml"), env=env),
        up_timeout=300,
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def root_cert(stack, tmp_path_factory) -> str:
    """The root certificate of Caddy's internal CA, as a client installs it."""
    path = tmp_path_factory.mktemp("ca") / "root.crt"
    stack.compose("cp", "proxy:/data/caddy/pki/authorities/local/root.crt", str(path))
    assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    return str(path)


@pytest.fixture(scope="module")
def https(root_cert) -> requests.Session:
    return trusting(requests.Session(), root_cert)


def trusting(session: requests.Session, root_cert: str) -> requests.Session:
    """The session verifies against Caddy's root only (no REQUESTS_CA_BUNDLE from the environment,
    which requests would otherwise prefer to session.verify)."""
    session.verify = root_cert
    session.trust_env = False
    return session


def url(path: str) -> str:
    return f"https://{HOST}:{HTTPS_PORT}{path}"


def get(session, path, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("allow_redirects", False)
    return session.get(url(path), **kwargs)


def test_proxy_runs_a_caddy_with_request_buffers(stack):
    """The Caddyfile buffers request bodies with `request_buffers` (Caddy 2.7 and later); Caddy
    2.11.2 and later also resend a buffered body whole when they retry (docs/production.md)."""
    major, minor = (int(part) for part in caddy_version(stack).split(".")[:2])
    assert (major, minor) >= (2, 7)
    assert "start-proxy: caddy" in stack.logs("proxy")


def test_https_with_the_internal_ca_and_hsts(stack, https):
    [health] = wait_until(lambda: [get(https, "/healthz")], timeout=60, what="the proxy to answer over HTTPS")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    hsts = health.raw.headers.getlist("Strict-Transport-Security")
    assert len(hsts) == 1 and re.search(r"max-age=\d{7,}", hsts[0]), hsts
    # Without the CA's root certificate the certificate is not trusted.
    with pytest.raises(requests.exceptions.SSLError):
        untrusting = requests.Session()
        untrusting.trust_env = False
        untrusting.get(url("/healthz"), timeout=30)


def test_plain_http_redirects_to_https(stack):
    plain = requests.get(
        f"http://{HOST}:{HTTP_PORT}/api/jobs/?page=2",
        timeout=30,
        allow_redirects=False,
        proxies={"http": None, "https": None},
    )
    assert plain.status_code in (301, 308), plain.status_code
    assert plain.headers["Location"] == f"https://{HOST}/api/jobs/?page=2"


def test_forwarded_headers_come_from_the_proxy_only(stack, https):
    probe = f"/xff-probe-{uuid.uuid4().hex[:10]}/"
    answer = get(
        https,
        probe,
        headers={
            "X-Forwarded-For": SPOOFED,
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "attacker.example",
        },
    )
    # Proto "http" from the client is not believed (no redirect loop) and the spoofed host is not used.
    assert answer.status_code == 404, (answer.status_code, answer.headers)
    line = wait_until(
        lambda: next((row for row in stack.logs("web").splitlines() if probe in row and '"GET' in row), None),
        timeout=30,
        what="web's access log line of the probe",
    )
    assert SPOOFED not in line, line
    # gunicorn's access log: "<peer> <X-Forwarded-For> ..." - the peer is the proxy, the forwarded
    # address the client as Caddy saw it (the Docker gateway here), a single address.
    fields = re.search(r"(\S+) (\S+) \"GET ", line)
    assert fields and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", fields.group(2)), line
    assert fields.group(1) != fields.group(2), line


def test_jobs_through_the_proxy_and_the_body_limit(stack, https):
    token = stack.create_token(f"proxy-{uuid.uuid4().hex[:8]}")
    api = Api(url(""), token)
    trusting(api.session, https.verify)
    submitted = api.submit("sum_number", {"x": 1, "y": 3})
    assert submitted.status_code == 202, submitted.text
    assert api.wait_for_state(submitted.json()["id"], "SUCCESS", "FAILURE", timeout=120)["state"] == "SUCCESS"
    limit = 65536  # API_MAX_BODY_BYTES's default, which the proxy's limit follows
    big = api.request(
        "POST",
        "/api/jobs/",
        data=b'{"kind": "noop", "name": "' + b"x" * limit + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413, (big.status_code, big.text[:300])
    # A chunked body (no Content-Length for web to refuse up front) is stopped at the limit by the
    # proxy or by web, whichever reads past it first; a small one is a job.
    small = api.request(
        "POST",
        "/api/jobs/",
        data=iter([b'{"kind": "noop", ', b'"params": {}}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.status_code == 202, (small.status_code, small.text[:300])
    chunks = iter([b'{"kind": "noop", "name": "', b"y" * limit, b'"}'])
    chunked = api.request("POST", "/api/jobs/", data=chunks, headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413, (chunked.status_code, chunked.text[:300])
    SEEN["job"] = submitted.json()["id"]


def test_flower_only_under_its_prefix_and_with_its_login(stack, https):
    auth = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])
    assert get(https, "/flower/").status_code == 401
    assert get(https, "/flower/", auth=(auth[0], "not-the-password")).status_code == 401
    page = get(https, "/flower/", auth=auth)
    assert page.status_code == 200 and 'href="/flower/static/' in page.text
    job = SEEN.get("job")
    if job:
        wait_until(
            lambda: job in get(https, "/flower/api/tasks", auth=auth).text,
            timeout=60,
            interval=1,
            what="Flower (through the proxy) to list the job",
        )
    # Flower's pages exist nowhere else on the proxy: /tasks goes to Django (404).
    other = get(https, "/tasks", auth=auth)
    assert other.status_code == 404 and "flower" not in other.text.lower()


def test_flower_not_reachable_through_the_proxy_unless_asked(stack, https):
    plain = stack.without("FLOWER_URL_PREFIX")
    plain.up("proxy", "flower", timeout=300)
    auth = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])
    for path in ("/flower/", "/flower/api/tasks", "/tasks", "/api/workers"):
        [answer] = wait_until(lambda: [get(https, path, auth=auth)], timeout=60, what=f"the proxy at {path}")
        assert answer.status_code == 404, (path, answer.status_code)
    # Flower itself still runs (on 127.0.0.1 for an SSH tunnel), at its root again.
    assert requests.get(stack.flower_url("/"), auth=auth, timeout=30).status_code == 200
