// Live progress of one job: polls GET /api/jobs/<id>/ once a second until the job finishes.
// The token comes from the URL fragment (#token=..., never sent to the server, so never in
// its logs) or from the form, and is kept in this tab's sessionStorage only.
(function () {
  "use strict";
  const root = document.getElementById("job");
  const apiUrl = root.dataset.apiUrl;
  const FINISHED = ["SUCCESS", "FAILURE", "REVOKED", "EXPIRED"];
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);

  function takeTokenFromFragment() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (match) {
      sessionStorage.setItem("jobs-api-token", decodeURIComponent(match[1]));
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return sessionStorage.getItem("jobs-api-token");
  }

  function setProgress(percent) {
    const value = Math.max(0, Math.min(100, percent));
    $("bar-fill").style.width = value + "%";
    root.querySelector(".bar").setAttribute("aria-valuenow", String(value));
    $("percent").textContent = value.toFixed(0) + "%";
  }

  function show(job) {
    $("state").textContent = job.state;
    $("message").textContent = job.progress ? job.progress.message : "";
    if (job.progress && job.progress.percent !== null) setProgress(job.progress.percent);
    if (job.state === "SUCCESS") {
      setProgress(100);
      $("result").textContent = JSON.stringify(job.result, null, 2);
      $("result-box").hidden = false;
    }
    if (job.error) {
      $("error").textContent = job.error;
      $("error").hidden = false;
    }
  }

  function askForToken(reason) {
    $("state").textContent = reason;
    $("token-form").hidden = false;
  }

  async function poll(token) {
    let response;
    try {
      response = await fetch(apiUrl, { headers: { Authorization: "Token " + token, Accept: "application/json" } });
    } catch (err) {
      $("state").textContent = "connection lost, retrying";
      setTimeout(() => poll(token), POLL_MS * 3);
      return;
    }
    if (response.status === 401) {
      sessionStorage.removeItem("jobs-api-token");
      askForToken("token refused");
      return;
    }
    if (response.status === 404) {
      $("state").textContent = "not found";
      return;
    }
    if (response.status === 503) {
      $("state").textContent = "service unavailable, retrying";
      setTimeout(() => poll(token), POLL_MS * 3);
      return;
    }
    const job = await response.json();
    show(job);
    if (!FINISHED.includes(job.state)) setTimeout(() => poll(token), POLL_MS);
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    sessionStorage.setItem("jobs-api-token", token);
    $("token-form").hidden = true;
    poll(token);
  });

  const token = takeTokenFromFragment();
  if (token) poll(token); else askForToken("token needed");
})();
