// The home page: stop the default server without a reload, manage named servers, live status,
// the time a batch job has left.
import { api, seg, showError, humanizeTimes, clock, busy, hubPrefix } from "./nbhub.js";

const home = document.getElementById("home");
const user = home.dataset.user;
const spawnerKind = home.dataset.spawner;
const errorBox = document.getElementById("home-error");
const warning = document.getElementById("time-warning");

const serverPath = (name) => (name ? `/users/${seg(user)}/servers/${seg(name)}` : `/users/${seg(user)}/server`);

const LABELS = { running: "Running", starting: "Starting", stopping: "Stopping", stopped: "Stopped" };

function statusOf(model) {
  if (!model) return "stopped";
  if (model.pending === "spawn") return "starting";
  if (model.pending === "stop") return "stopping";
  if (model.ready) return "running";
  return "stopped";
}

function setBadge(el, status) {
  if (!el) return;
  el.className = `badge server-status status-${status}`;
  el.textContent = LABELS[status];
}

function renderDefault(model) {
  const status = statusOf(model);
  setBadge(document.getElementById("default-status"), status);
  const active = status !== "stopped";
  document.getElementById("stop").classList.toggle("d-none", !active || status === "stopping");
  const start = document.getElementById("start");
  start.querySelector(".label").textContent = active ? "My Server" : "Start My Server";
  start.href = status === "running" ? model.url : `${hubPrefix}spawn/${seg(user)}`;
}

function renderNamed(name, model) {
  const row = [...document.querySelectorAll("tr.home-server-row[data-server-name]")].find(
    (r) => r.dataset.serverName === name,
  );
  if (!row) return;
  const status = statusOf(model);
  const active = status !== "stopped";
  setBadge(row.querySelector(".server-status"), status);
  row.querySelector(".start-server").classList.toggle("d-none", active);
  row.querySelector(".open-server").classList.toggle("d-none", status !== "running");
  row.querySelector(".server-link")?.classList.toggle("d-none", status !== "running");
  row.querySelector(".stop-server").classList.toggle("d-none", !active || status === "stopping");
  row.querySelector(".delete-server").classList.toggle("d-none", active);
}

// Servers seen active, and those the user is stopping here: one that stops by itself (a time
// limit, a cancelled job) reloads the page, which then says why it ended.
const seenActive = new Set();
const stoppedHere = new Set();

function noticeEnds(servers) {
  const names = ["", ...[...document.querySelectorAll("tr.home-server-row[data-server-name]")].map((r) => r.dataset.serverName)];
  let ended = false;
  for (const name of names) {
    const active = statusOf(servers[name]) !== "stopped";
    if (active) seenActive.add(name);
    else if (seenActive.has(name)) {
      seenActive.delete(name);
      if (!stoppedHere.delete(name)) ended = true;
    }
  }
  if (ended) window.location.reload();
}

async function refresh() {
  try {
    const model = await api("GET", `/users/${seg(user)}`);
    const servers = model.servers || {};
    noticeEnds(servers);
    renderDefault(servers[""]);
    for (const row of document.querySelectorAll("tr.home-server-row[data-server-name]")) {
      renderNamed(row.dataset.serverName, servers[row.dataset.serverName]);
    }
    updateFacts(servers);
  } catch (e) {
    // A passing network hiccup: try again at the next tick.
  }
}

function updateFacts(servers) {
  if (!spawnerKind) return;
  for (const slot of document.querySelectorAll(".server-facts-slot")) {
    const facts = servers[slot.dataset.server]?.[spawnerKind];
    if (!facts) slot.querySelector(".server-facts")?.remove();
  }
}

/** Waits (polling) until the server has stopped, updating the page as it goes. */
async function waitStopped(name) {
  for (let i = 0; i < 120; i++) {
    const model = await api("GET", `/users/${seg(user)}`);
    const s = (model.servers || {})[name];
    if (name === "") renderDefault(s);
    else renderNamed(name, s);
    if (statusOf(s) === "stopped") return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function stop(name, button) {
  showError(errorBox, "");
  stoppedHere.add(name);
  await busy(button, async () => {
    try {
      if (name === "") renderDefault({ pending: "stop" });
      else renderNamed(name, { pending: "stop" });
      await api("DELETE", serverPath(name));
      await waitStopped(name);
    } catch (e) {
      showError(errorBox, `Could not stop the server: ${e.message}`);
      refresh();
    }
  });
}

document.getElementById("stop").addEventListener("click", (ev) => {
  ev.preventDefault();
  stop("", ev.currentTarget);
});

for (const btn of document.querySelectorAll(".stop-server")) {
  btn.addEventListener("click", () => stop(btn.dataset.server, btn));
}

for (const btn of document.querySelectorAll(".delete-server")) {
  btn.addEventListener("click", async () => {
    const name = btn.dataset.server;
    if (!window.confirm(`Delete the server ${name}? Its settings are forgotten (your files stay).`)) return;
    await busy(btn, async () => {
      try {
        await api("DELETE", serverPath(name), { remove: true });
        btn.closest("tr").remove();
      } catch (e) {
        showError(errorBox, `Could not delete ${name}: ${e.message}`);
      }
    });
  });
}

const newForm = document.getElementById("new-server-form");
if (newForm) {
  newForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = document.getElementById("new-server-name").value.trim();
    if (!name) return;
    window.location.href = `${hubPrefix}spawn/${seg(user)}/${seg(name)}`;
  });
}

// Time left of batch jobs, and a warning below ten minutes.
function tick() {
  let soonest = Infinity;
  for (const dl of document.querySelectorAll(".server-facts[data-end-time]")) {
    const left = (Date.parse(dl.dataset.endTime) - Date.now()) / 1000;
    const dd = dl.querySelector(".time-left");
    if (dd) dd.textContent = left > 0 ? clock(left) : "time is up";
    soonest = Math.min(soonest, left);
  }
  if (warning) {
    const show = soonest < 600;
    warning.classList.toggle("d-none", !show);
    if (show) {
      warning.textContent =
        soonest > 0
          ? `Your server will be stopped in ${clock(soonest)} when its time limit is reached: save your work.`
          : "Your server's time limit has been reached.";
    }
  }
}

tick();
setInterval(tick, 1000);
setInterval(refresh, 5000);
setInterval(() => humanizeTimes(), 30000);
