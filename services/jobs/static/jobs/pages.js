// The pages' one script (templates/jobs/base.html): live updates of the job list and of a job's
// page by conditional polling (GET /jobs/live/?id=..., If-None-Match, 304 when nothing changed),
// elapsed times that count, the token page's copy button and revoke confirmation, and the removal
// of an old "#token=" fragment from the address bar. Every page reads and works without it.
(function () {
  "use strict";

  // Links to the old progress page (/jobs/<id>/#token=...): the pages read no token from the URL
  // now (they use the session); keep it out of this tab's address bar and history entry.
  if (/(^#|&)token=/.test(window.location.hash)) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  // Poll pacing. scripts/benchlib/live_pages.py simulates open pages with the same numbers.
  const POLL_MS = 1000;       // after an answer that changed something
  const MAX_POLL_MS = 8000;   // the wait doubles up to this while nothing changes (304)
  const ERROR_POLL_MS = 8000; // after a failed poll (network, 5xx)

  function formatDuration(totalSeconds) {
    // As jobs/job_display.py format_duration.
    let s = Math.max(0, Math.floor(totalSeconds));
    if (s < 60) return s + " s";
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + " min " + s + " s";
    let h = Math.floor(m / 60); m %= 60;
    if (h < 24) return h + " h " + m + " min";
    const d = Math.floor(h / 24); h %= 24;
    return d + " d " + h + " h";
  }

  function tickElapsed() {
    const now = Date.now();
    document.querySelectorAll("[data-field=elapsed][data-since]").forEach(function (cell) {
      const since = Date.parse(cell.dataset.since);
      const until = cell.dataset.until ? Date.parse(cell.dataset.until) : now;
      if (!isNaN(since) && !isNaN(until)) cell.textContent = formatDuration((until - since) / 1000);
    });
  }

  function field(scope, name) {
    return scope.querySelector("[data-field=" + name + "]");
  }

  function announce(text) {
    const region = document.querySelector("[data-field=announce]");
    if (region) region.textContent = text;
  }

  // Show a job's new live state (jobs/job_display.py live_state) in its row or on its page.
  function apply(root, job) {
    const state = field(root, "state");
    const changed = state.textContent !== job.state;
    state.textContent = job.state;
    state.className = "state state-" + job.state.toLowerCase();
    field(root, "bar").value = job.percent;
    field(root, "percent").textContent = Math.round(job.percent) + " %";
    field(root, "message").textContent = job.message;
    field(root, "elapsed").dataset.until = job.finished_at || "";
    root.dataset.finished = job.finished ? "true" : "false";
    return changed;
  }

  // A job's page: the regions the server renders once per state (times, result, error, buttons)
  // are fetched again when the state changes, so they are rendered by the same template.
  async function refreshRegions(root) {
    const response = await fetch(window.location.pathname, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    document.querySelectorAll("[data-swap]").forEach(function (region) {
      const replacement = fresh.querySelector("[data-swap=" + region.dataset.swap + "]");
      if (!replacement) return;
      const hadFocus = region.contains(document.activeElement);
      region.innerHTML = replacement.innerHTML;
      if (hadFocus) (region.querySelector("button, a, summary") || region).focus();
    });
  }

  function startLive(container) {
    const url = container.dataset.liveUrl;
    const isPage = container.hasAttribute("data-job-id");
    const roots = isPage ? [container] : Array.from(container.querySelectorAll("[data-job-id]"));
    let etag = null;
    let wait = POLL_MS;
    let timer = null;
    let busy = false;
    let stopped = false;

    function open() {
      return roots.filter(function (root) { return root.dataset.finished !== "true"; });
    }

    function schedule(ms) {
      if (!timer && !stopped) timer = setTimeout(poll, ms);
    }

    async function poll() {
      timer = null;
      const watched = open();
      // A hidden tab does not poll; it polls again as soon as it is shown.
      if (busy || stopped || !watched.length || document.hidden) return;
      busy = true;
      try {
        const query = watched.map(function (root) { return "id=" + encodeURIComponent(root.dataset.jobId); }).join("&");
        const headers = { Accept: "application/json" };
        if (etag) headers["If-None-Match"] = etag;
        let response;
        try {
          response = await fetch(url + "?" + query, { headers: headers, cache: "no-store", credentials: "same-origin" });
        } catch (err) {
          schedule(ERROR_POLL_MS);
          return;
        }
        if (response.status === 304) {
          wait = Math.min(wait * 2, MAX_POLL_MS);
          schedule(wait);
          return;
        }
        if (response.status === 401) {
          stopped = true;
          announce("You were signed out: reload the page to sign in again.");
          return;
        }
        if (!response.ok) {
          schedule(ERROR_POLL_MS);
          return;
        }
        etag = response.headers.get("ETag");
        const answer = await response.json();
        for (const job of answer.jobs) {
          const root = roots.find(function (r) { return r.dataset.jobId === job.id; });
          if (!root || !apply(root, job)) continue;
          if (isPage) {
            await refreshRegions(root);
            announce("Job " + job.state + (job.message ? ": " + job.message : ""));
          } else if (job.finished) {
            announce("Job " + root.querySelector("a").textContent + ": " + job.state);
          }
        }
        wait = POLL_MS;
        schedule(wait);
      } finally {
        busy = false;
      }
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && !timer) poll();
    });
    schedule(POLL_MS);
  }

  function setUpTokens() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", async function () {
        const input = document.getElementById(button.dataset.copy);
        const status = document.querySelector("[data-field=copied]");
        try {
          await navigator.clipboard.writeText(input.value);
          if (status) status.textContent = "Copied.";
        } catch (err) {
          input.select();
          if (status) status.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
        }
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const problem = document.querySelector("[data-focus-on-load]");
    if (problem) problem.focus();
    document.querySelectorAll("[data-live-url]").forEach(startLive);
    if (document.querySelector("[data-field=elapsed][data-since]")) {
      tickElapsed();
      setInterval(tickElapsed, 1000);
    }
    setUpTokens();
  });
})();
