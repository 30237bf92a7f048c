"""The pages people use, in Debian's Chromium driven by selenium (chromium-driver), on the session's
compose stack: sign in, submit a model_inference job from its form and watch the bar move to
SUCCESS on the job's page and on the list, cancel a running job and see it REVOKED, re-run a
finished one, make an API token on the page that curl can use until it is revoked there, the
keyboard alone and no JavaScript at all, and axe-core on every page (no serious or critical
violation). Each step leaves a screenshot in artifacts/ (pages-NN-*.png), and axe's findings
as artifacts/axe-*.json.

axe-core comes from npm, fetched by .ci/provision (AXE_CORE_JS names its axe.min.js); no browser
is downloaded. Every wait is on a condition the page shows, never a fixed sleep.
"""

import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.helpers import unique
from tests.support.stack import ARTIFACTS
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("E2E_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_CORE_JS = Path(os.environ.get("AXE_CORE_JS", "/var/cache/stack-ci/axe-core/axe.min.js"))
USERNAME = "e2e-pages"
# Long enough for the bar to be seen between 0 and 100 % several times (one step a second).
WATCHED_STEPS = 8
FINISHED = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")


def start_chromium(javascript: bool = True):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager must not try to download a browser or driver: both are given.
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1280,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='e2e-pages-chromium-')}",
    ):
        options.add_argument(flag)
    prefs = {"credentials_enable_service": False, "profile.password_manager_enabled": False}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module", autouse=True)
def module_started(stack) -> int:
    """When this module began (Unix time): web's access log from then on is checked at the end."""
    return int(time.time()) - 1


@pytest.fixture(scope="module")
def person(stack) -> dict:
    """A user with a password for the pages (and the API token create_api_user prints)."""
    password = secrets.token_urlsafe(18)
    out = stack.manage(
        "create_api_user", USERNAME, "--existing-ok", "--password-stdin", input=password + "\n"
    ).stdout
    return {"username": USERNAME, "password": password, "token": out.strip().splitlines()[-1]}


class Shots:
    """Numbered screenshots of the steps, in artifacts/."""

    def __init__(self):
        self.count = 0
        ARTIFACTS.mkdir(exist_ok=True)

    def take(self, driver, name: str) -> None:
        self.count += 1
        driver.save_screenshot(str(ARTIFACTS / f"pages-{self.count:02d}-{name}.png"))


@pytest.fixture(scope="module")
def shots() -> Shots:
    return Shots()


def sign_in(driver, stack, person, next_path: str = "/jobs/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(stack.url(next_path))
    assert "/accounts/login/" in driver.current_url, driver.current_url
    driver.find_element(By.ID, "id_username").send_keys(person["username"])
    driver.find_element(By.ID, "id_password").send_keys(person["password"])
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_until(
        lambda: driver.current_url == stack.url(next_path),
        timeout=30,
        interval=0.1,
        what=f"the sign-in to land on {next_path}",
    )


@pytest.fixture(scope="module")
def browser(stack, person, shots):
    """Chromium, signed in as the person through the sign-in form."""
    driver = start_chromium()
    try:
        driver.get(stack.url("/jobs/"))
        shots.take(driver, "sign-in")
        sign_in(driver, stack, person)
        assert f"Signed in as {USERNAME}" in driver.find_element("css selector", "header").text
        yield driver
    finally:
        driver.quit()


def api(stack, person) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {person['token']}"
    return session


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def shown(driver, root_selector: str) -> dict:
    """What a job's row or page shows now: state, the bar's value and text, read in one go."""
    return js(
        driver,
        """
        const root = document.querySelector(arguments[0]);
        if (!root) return null;
        const bar = root.querySelector('[data-field=bar]');
        return {state: root.querySelector('[data-field=state]').textContent.trim(),
                value: bar.value, percent: root.querySelector('[data-field=percent]').textContent,
                message: root.querySelector('[data-field=message]').textContent.trim()};
    """,
        root_selector,
    )


def watch(driver, root_selector: str, until: str, timeout: float = 120) -> list[dict]:
    """Read a job's row or page until it shows `until`; every reading, in order."""
    readings: list[dict] = []

    def reached():
        now = shown(driver, root_selector)
        if now and (not readings or now != readings[-1]):
            readings.append(now)
        return now and now["state"] == until

    wait_until(reached, timeout=timeout, interval=0.1, what=f"{root_selector} to show {until}")
    return readings


def assert_bar_moved(readings: list[dict]) -> None:
    values = [r["value"] for r in readings]
    partial = sorted({v for v in values if 0 < v < 100})
    assert len(partial) >= 2, f"the bar never moved through intermediate values: {readings}"
    assert values == sorted(values), f"the bar went backwards: {readings}"
    assert readings[-1]["value"] == 100 and readings[-1]["percent"] == "100 %", readings[-1]
    assert any(r["state"] == "PROGRESS" and r["message"].startswith("step ") for r in readings), readings


def submit_from_form(driver, stack, name: str, text: str, steps: int, step_seconds: float) -> str:
    """Open the model_inference form from the kinds page, fill it in, submit; the new job's id."""
    from selenium.webdriver.common.by import By

    driver.get(stack.url("/jobs/new/"))
    driver.find_element(By.LINK_TEXT, "model_inference").click()
    driver.find_element(By.ID, "param-text").send_keys(text)
    for field, value in (("param-steps", steps), ("param-step_seconds", step_seconds)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    driver.find_element(By.ID, "field-name").send_keys(name)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    match = wait_until(
        lambda: re.fullmatch(re.escape(stack.url("/jobs/")) + r"([0-9a-f-]{36})/", driver.current_url),
        timeout=30,
        interval=0.1,
        what="the job's page after submitting",
    )
    return match.group(1)


# --- 1. sign in, submit from the form, watch to SUCCESS on the job's page and on the list ------------


def test_submit_and_watch_the_bar_to_success(stack, browser, person, shots):
    from selenium.webdriver.common.by import By

    job_id = submit_from_form(
        browser, stack, unique("watched-page"), "watched on its page", WATCHED_STEPS, 1.0
    )
    assert browser.find_element(By.CSS_SELECTOR, ".messages").text.startswith("Job watched-page-")
    wait_until(
        lambda: shown(browser, "section.job")["state"] == "PROGRESS",
        timeout=60,
        interval=0.1,
        what="PROGRESS on the job's page",
    )
    shots.take(browser, "detail-progress")
    readings = watch(browser, "section.job", "SUCCESS")
    assert_bar_moved(readings)
    # The result arrives without a reload: the page fetched its result section when the state changed.
    wait_until(
        lambda: browser.find_elements(By.ID, "result-heading"),
        timeout=30,
        interval=0.1,
        what="the result section",
    )
    fields = dict(
        zip(
            [e.text for e in browser.find_elements(By.CSS_SELECTOR, "dl.result dt")],
            [e.text for e in browser.find_elements(By.CSS_SELECTOR, "dl.result dd")],
            strict=True,
        )
    )
    assert fields["steps"] == str(WATCHED_STEPS) and fields["label"] in ("negative", "neutral", "positive")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()  # the collapsible JSON
    assert json.loads(browser.find_element(By.CSS_SELECTOR, "details pre").text)["steps"] == WATCHED_STEPS
    assert browser.find_elements(By.XPATH, "//button[normalize-space()='Re-run this job']")
    shots.take(browser, "detail-success")
    # The API says the same of this job (it is the person's, whatever signed it in).
    assert api(stack, person).get(stack.url(f"/api/jobs/{job_id}/"), timeout=30).json()["state"] == "SUCCESS"

    # A second job, watched on the list this time.
    listed = submit_from_form(
        browser, stack, unique("watched-list"), "watched on the list", WATCHED_STEPS, 1.0
    )
    browser.get(stack.url("/jobs/"))
    row = f'tr[data-job-id="{listed}"]'
    wait_until(
        lambda: shown(browser, row)["state"] == "PROGRESS",
        timeout=60,
        interval=0.1,
        what="PROGRESS on the list",
    )
    shots.take(browser, "list-progress")
    readings = watch(browser, row, "SUCCESS")
    assert_bar_moved(readings)
    # Newest first: the job just watched leads, the one before follows.
    order = [
        row.get_attribute("data-job-id") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-job-id]")
    ]
    assert order.index(listed) < order.index(job_id)
    shots.take(browser, "list-success")

    # An old link with the token in its fragment: the token leaves the address bar at once.
    browser.get(stack.url(f"/jobs/{job_id}/#token={person['token']}"))
    wait_until(
        lambda: "token" not in browser.current_url, timeout=10, interval=0.1, what="the #token fragment to go"
    )


# --- 2. cancel a running job, re-run a finished one -----------------------------------------------


def click_through_updates(browser, xpath: str) -> None:
    """Click the element, found again if the page's live update replaced it between the find and
    the click (a running job's section is redrawn at each progress report: seen once in CI)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        try:
            browser.find_element(By.XPATH, xpath).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(clicked, timeout=10, interval=0.05, what=f"a click on {xpath}")


def test_cancel_a_running_job_and_rerun_it(stack, browser, person, shots):
    from selenium.webdriver.common.by import By

    name = unique("cancelled")
    job_id = submit_from_form(browser, stack, name, "cancelled while running", 100, 0.5)
    wait_until(
        lambda: shown(browser, "section.job")["state"] == "PROGRESS",
        timeout=60,
        interval=0.1,
        what="PROGRESS before cancelling",
    )
    shots.take(browser, "running-before-cancel")
    click_through_updates(browser, "//button[normalize-space()='Cancel this job']")
    wait_until(
        lambda: shown(browser, "section.job")["state"] == "REVOKED",
        timeout=60,
        interval=0.1,
        what="REVOKED on the job's page",
    )
    wait_until(
        lambda: "The job was cancelled." in browser.find_element(By.TAG_NAME, "main").text,
        timeout=30,
        interval=0.1,
        what="the cancellation note",
    )
    shots.take(browser, "revoked")
    assert api(stack, person).get(stack.url(f"/api/jobs/{job_id}/"), timeout=30).json()["state"] == "REVOKED"

    # Re-run it: a new run of the same name, kind and parameters, on its own page.
    rerun = wait_until(
        lambda: browser.find_elements(By.XPATH, "//button[normalize-space()='Re-run this job']"),
        timeout=30,
        interval=0.1,
        what="the re-run button",
    )
    rerun[0].click()
    new_page = wait_until(
        lambda: (
            (match := re.fullmatch(re.escape(stack.url("/jobs/")) + r"([0-9a-f-]{36})/", browser.current_url))
            and match.group(1) != job_id
            and match
        ),
        timeout=30,
        interval=0.1,
        what="the new run's page",
    )
    new_id = new_page.group(1)
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Job {name} run 2"
    shots.take(browser, "rerun")
    again = api(stack, person).get(stack.url(f"/api/jobs/{new_id}/"), timeout=30).json()
    assert (again["name"], again["run"], again["params"]["steps"]) == (name, 2, 100)
    assert again["state"] not in FINISHED
    # Not to leave it running for the rest of the suite.
    browser.find_element(By.XPATH, "//button[normalize-space()='Cancel this job']").click()
    wait_until(
        lambda: shown(browser, "section.job")["state"] == "REVOKED",
        timeout=60,
        interval=0.1,
        what="the re-run cancelled",
    )


# --- 3. polls slow down while nothing changes -----------------------------------------------------


def test_an_unchanged_job_is_polled_less_and_less_often(stack, browser):
    """While a job shows no change the page's polls are answered 304 and come further apart; the
    change that ends the wait still arrives (what scripts/bench row 9 simulates)."""
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(stack.url("/jobs/new/wait_io/"))
    for field, value in (("param-seconds", "10"), ("param-steps", "1")):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "section.job"),
        timeout=30,
        interval=0.1,
        what="the wait_io job's page",
    )
    watch(driver, "section.job", "SUCCESS", timeout=60)
    polls = js(
        driver,
        """
        return performance.getEntriesByType('resource')
          .filter((e) => e.name.includes('/jobs/live/'))
          .map((e) => ({at: e.startTime, status: e.responseStatus}));""",
    )
    statuses = [poll["status"] for poll in polls]
    assert 304 in statuses and statuses[-1] == 200, polls
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(polls, polls[1:])]
    # The wait doubles after each 304 (1 s, 2 s, 4 s ...): at least one gap of 4 s while it waited.
    assert max(gaps) >= 3900, polls
    assert len(polls) <= 8, polls  # a poll a second would have made 11 or more


# --- 4. a token made on the page works with curl until it is revoked there -------------------------


def curl(stack, token: str, path: str) -> tuple[int, str]:
    """curl with the token in a header read from stdin (-H @-): never on a command line."""
    result = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "@-", stack.url(path)],
        input=f"Authorization: Token {token}\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def test_token_made_on_the_page_works_with_curl_until_revoked(stack, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    name = unique("curl")
    browser.get(stack.url("/tokens/"))
    browser.find_element(By.ID, "token-name").send_keys(name)
    browser.find_element(By.XPATH, "//button[normalize-space()='Create token']").click()
    token = wait_until(
        lambda: browser.find_element(By.ID, "new-token").get_attribute("value"),
        timeout=30,
        interval=0.1,
        what="the new token",
    )
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    # The screenshot must not carry a usable token: its field is masked first.
    js(browser, "document.getElementById('new-token').value = '(shown once; masked for this screenshot)'")
    shots.take(browser, "token-created")

    code, body = curl(stack, token, "/api/whoami/")
    assert (code, json.loads(body)) == (200, {"username": USERNAME})
    code, body = curl(stack, token, "/api/jobs/")
    assert code == 200 and "results" in json.loads(body)

    browser.get(stack.url("/tokens/"))
    row = browser.find_element(By.XPATH, f"//tr[th[normalize-space()='{name}']]")
    assert row.find_element(By.TAG_NAME, "code").text == token[:15] + "…"
    assert token not in browser.page_source
    row.find_element(By.XPATH, ".//button[normalize-space()='Revoke']").click()
    WebDriverWait(browser, 10).until(expected_conditions.alert_is_present()).accept()
    wait_until(
        lambda: "revoked" in browser.find_element(By.CSS_SELECTOR, ".messages").text,
        timeout=30,
        interval=0.1,
        what="the revocation message",
    )
    shots.take(browser, "token-revoked")
    assert not browser.find_elements(By.XPATH, f"//tr[th[normalize-space()='{name}']]")
    assert curl(stack, token, "/api/whoami/")[0] == 401
    assert curl(stack, token, "/api/jobs/")[0] == 401


# --- 5. keyboard only, and no JavaScript -------------------------------------------------------------


def test_a_job_submitted_with_the_keyboard_alone(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(stack.url("/jobs/new/noop/"))
    active = lambda: browser.switch_to.active_element  # noqa: E731
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert active().text == "Skip to content"
    active().send_keys(Keys.ENTER)
    assert active().get_attribute("id") == "main"
    for _ in range(20):  # from the main content to the name field, then the submit button
        active().send_keys(Keys.TAB)
        if active().get_attribute("id") == "field-name":
            break
    assert active().get_attribute("id") == "field-name"
    name = unique("keyboard")
    active().send_keys(name)
    active().send_keys(Keys.TAB)  # the "run again" box
    active().send_keys(Keys.TAB)
    assert active().text == "Submit job"
    active().send_keys(Keys.ENTER)
    wait_until(
        lambda: browser.find_element(By.TAG_NAME, "h1").text == f"Job {name}",
        timeout=30,
        interval=0.1,
        what="the job's page",
    )


def test_pages_read_without_javascript(stack, person, shots):
    from selenium.webdriver.common.by import By

    client = api(stack, person)
    params = {"text": "read without scripts", "steps": 1, "step_seconds": 0.1}
    body = {"kind": "model_inference", "name": unique("no-js"), "params": params}
    job_id = client.post(stack.url("/api/jobs/"), json=body, timeout=30).json()["id"]
    wait_until(
        lambda: client.get(stack.url(f"/api/jobs/{job_id}/"), timeout=30).json()["state"] == "SUCCESS",
        timeout=60,
        interval=0.2,
        what="the job to read without JavaScript",
    )
    driver = start_chromium(javascript=False)
    try:
        sign_in(driver, stack, person)  # a plain form post
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"]')
        assert row.find_element(By.CSS_SELECTOR, "[data-field=state]").text == "SUCCESS"
        assert "reload it" in driver.find_element(By.TAG_NAME, "main").text  # the <noscript> hint
        row.find_element(By.TAG_NAME, "a").click()
        assert driver.find_element(By.ID, "result-heading").text == "Result"
        assert driver.find_element(By.CSS_SELECTOR, "section.job [data-field=state]").text == "SUCCESS"
        shots.take(driver, "no-javascript")
    finally:
        driver.quit()


# --- 6. axe-core: no serious or critical violation ---------------------------------------------------


def axe_violations(driver, label: str) -> list[dict]:
    """axe-core's violations on the page now (all of its WCAG and best-practice rules); the full
    report goes to artifacts/axe-<label>.json."""
    driver.execute_script(AXE_CORE_JS.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(done, (e) => done({error: String(e)}));"
    )
    assert "error" not in result, result
    (ARTIFACTS / f"axe-{label}.json").write_text(json.dumps(result["violations"], indent=2))
    return result["violations"]


def test_axe_core_finds_no_serious_or_critical_violation(stack, browser, person, shots):
    from selenium.webdriver.common.by import By

    assert AXE_CORE_JS.is_file(), f"{AXE_CORE_JS} is missing: .ci/provision fetches axe-core"
    finished = submit_from_form(browser, stack, unique("axe"), "checked by axe", 2, 0.2)
    wait_until(
        lambda: (
            shown(browser, "section.job")["state"] == "SUCCESS"
            and browser.find_elements(By.ID, "result-heading")
        ),
        timeout=60,
        interval=0.1,
        what="the job checked by axe to succeed",
    )
    running = submit_from_form(browser, stack, unique("axe-running"), "checked while running", 30, 1.0)
    wait_until(
        lambda: shown(browser, "section.job")["state"] == "PROGRESS",
        timeout=60,
        interval=0.1,
        what="a running job to check",
    )
    pages = [
        ("detail-running", f"/jobs/{running}/"),
        ("detail-success", f"/jobs/{finished}/"),
        ("list", "/jobs/"),
        ("list-filtered", "/jobs/?state=SUCCESS&kind=model_inference"),
        ("kinds", "/jobs/new/"),
        ("form", "/jobs/new/model_inference/"),
        ("form-sum_number", "/jobs/new/sum_number/"),
        ("tokens", "/tokens/"),
    ]
    found = {}
    for label, path in pages:
        browser.get(stack.url(path))
        found[label] = axe_violations(browser, label)
    # The form with its errors shown at the fields.
    browser.get(stack.url("/jobs/new/model_inference/"))
    browser.find_element(By.ID, "param-steps").clear()
    browser.find_element(By.ID, "param-steps").send_keys("0")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_until(
        lambda: browser.find_elements(By.ID, "param-steps-error"),
        timeout=30,
        interval=0.1,
        what="the field errors",
    )
    shots.take(browser, "form-errors")
    found["form-errors"] = axe_violations(browser, "form-errors")
    # The sign-in page, signed out (another browser: this one stays signed in).
    anonymous = start_chromium()
    try:
        anonymous.get(stack.url("/accounts/login/"))
        found["sign-in"] = axe_violations(anonymous, "sign-in")
    finally:
        anonymous.quit()
    browser.get(stack.url(f"/jobs/{running}/"))
    # The check can fail: an image with no text alternative added to the page is found (critical).
    js(browser, "document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/x.png\">')")
    planted = axe_violations(browser, "self-check-planted-violation")
    assert "image-alt" in {v["id"] for v in planted if v["impact"] == "critical"}, planted
    browser.get(stack.url(f"/jobs/{running}/"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Cancel this job']").click()

    serious = {
        label: [
            (v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:5])
            for v in violations
            if v["impact"] in ("serious", "critical")
        ]
        for label, violations in found.items()
    }
    assert not any(serious.values()), json.dumps(serious, indent=1)


# --- last: no 5xx in web's access log while this module ran ------------------------------------------

ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def test_no_server_error_was_seen(stack, module_started):
    logs = stack.compose("logs", "--no-color", "--since", str(module_started), "web").stdout
    answered = [match.groupdict() for match in map(ACCESS_LINE.search, logs.splitlines()) if match]
    assert any(entry["path"] == "/jobs/live/" and entry["status"] == "304" for entry in answered), (
        "no live poll was answered 304 Not Modified"
    )
    errors = [entry for entry in answered if int(entry["status"]) >= 500]
    assert not errors, f"server errors in web's access log: {errors}"
