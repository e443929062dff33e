// The spawn-pending page: follow the progress stream, go to the server when it is ready,
// show a failure in red with a way back, and cancel the start. The tab's title says the
// state (Queued, Starting, Ready, Failed), and the browser notifies when the server is ready
// (or failed), if the user allowed it: a long queue need not be watched.
const page = document.getElementById("spawn-pending");
const bar = document.getElementById("progress-bar");
const progress = document.getElementById("progress");
const message = document.getElementById("progress-message");
const log = document.getElementById("progress-log");
const failedBox = document.getElementById("pending-failed");
const cancel = document.getElementById("cancel-spawn");

const notifyBtn = document.getElementById("notify-btn");
const notifyStatus = document.getElementById("notify-status");

const TITLES = { queued: "Queued", starting: "Starting", ready: "Ready", failed: "Failed" };

/** The state in the tab's title, e.g. "Queued · nbhub". */
function setState(state) {
  if (!TITLES[state]) return;
  page.dataset.state = state;
  document.title = `${TITLES[state]} · nbhub`;
}

const canNotify = () => "Notification" in window;

function sayNotify(text) {
  notifyStatus.textContent = text;
  notifyStatus.classList.remove("d-none");
}

// Asking needs a click (browsers ignore a request without one); once allowed, no button.
if (canNotify() && Notification.permission === "default") {
  notifyBtn.classList.remove("d-none");
  notifyBtn.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    notifyBtn.classList.add("d-none");
    sayNotify(
      answer === "granted"
        ? "You will be notified when your server is ready."
        : "Notifications are blocked in this browser; keep this tab open to see when your server is ready.",
    );
  });
}

/** A browser notification, if allowed; a failure to show one changes nothing else. */
function notify(title, body) {
  if (!canNotify() || Notification.permission !== "granted") return;
  try {
    new Notification(title, { body, tag: "nbhub-spawn" });
  } catch (e) {
    // Some browsers allow notifications only from a service worker: the title still says it.
  }
}

setState("starting");

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
  setState("failed");
  notify("Your server failed to start", reason);
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
  // The hub marks each event with the start's state: queued (a batch queue) or starting.
  if (evt.state) setState(evt.state);
  if (evt.ready) {
    source.close();
    bar.classList.remove("progress-bar-animated");
    bar.classList.add("bg-success");
    setState("ready");
    notify("Your server is ready", `${page.dataset.serverDisplay} is running.`);
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
  message.textContent = "Stopping…";
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
