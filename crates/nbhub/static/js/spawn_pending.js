// The spawn-pending page: follow the progress stream, go to the server when it is ready,
// show a failure in red with a way back, and cancel the start.
const page = document.getElementById("spawn-pending");
const bar = document.getElementById("progress-bar");
const progress = document.getElementById("progress");
const message = document.getElementById("progress-message");
const log = document.getElementById("progress-log");
const failedBox = document.getElementById("pending-failed");
const cancel = document.getElementById("cancel-spawn");

function setProgress(p) {
  bar.style.width = `${p}%`;
  progress.setAttribute("aria-valuenow", String(p));
}

function addLine(text) {
  const li = document.createElement("li");
  li.textContent = text;
  log.appendChild(li);
}

function fail(reason) {
  bar.classList.remove("progress-bar-animated", "progress-bar-striped");
  bar.classList.add("bg-danger");
  setProgress(100);
  message.textContent = "Spawn failed";
  document.getElementById("failure-reason").textContent = reason;
  failedBox.classList.remove("d-none");
  cancel.classList.add("d-none");
  document.getElementById("pending-title").textContent = "Your server failed to start.";
  document.getElementById("pending-hint").textContent = "";
}

// The stream is an API call authenticated by the login cookie, so it carries the XSRF token.
const xsrf = encodeURIComponent((window.jhdata || {}).xsrf_token || "");
const source = new EventSource(`${page.dataset.progressUrl}?_xsrf=${xsrf}`);
source.onmessage = (e) => {
  const evt = JSON.parse(e.data);
  if (typeof evt.progress === "number") setProgress(evt.progress);
  if (evt.message) {
    message.textContent = evt.message;
    addLine(evt.message);
  }
  if (evt.ready) {
    source.close();
    bar.classList.remove("progress-bar-animated");
    bar.classList.add("bg-success");
    window.location.href = page.dataset.next || evt.url;
  } else if (evt.failed) {
    source.close();
    fail(evt.message || "the server did not start");
  }
};
source.onerror = () => {
  // The stream ended without a verdict (hub restart, stop elsewhere): reload shows where things are.
  if (source.readyState === EventSource.CLOSED) window.location.reload();
};

cancel.addEventListener("click", async () => {
  cancel.disabled = true;
  source.close();
  message.textContent = "Cancelling…";
  try {
    await fetch(page.dataset.stopUrl, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-XSRFToken": (window.jhdata || {}).xsrf_token || "" },
    });
  } finally {
    window.location.href = page.dataset.homeUrl;
  }
});
