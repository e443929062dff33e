// The home page: stop the default server without a reload, manage named servers, live status,
// the spawner's facts (a batch job: id, partition, nodes, why it waits, the time it has left).
import { api, seg, showError, humanizeTimes, clock, busy, hubPrefix } from "./nbhub.js";

const home = document.getElementById("home");
const user = home.dataset.user;
const spawnerKind = home.dataset.spawner;
const errorBox = document.getElementById("home-error");
const warning = document.getElementById("time-warning");

const serverPath = (name) => (name ? `/users/${seg(user)}/servers/${seg(name)}` : `/users/${seg(user)}/server`);

const LABELS = { running: "Running", pending: "Pending", starting: "Starting", stopping: "Stopping", stopped: "Stopped" };

function statusOf(model) {
  if (!model) return "stopped";
  // A start whose job waits in the batch queue: the spawner says why (and until when).
  if (model.pending === "spawn") return model[spawnerKind]?.pending ? "pending" : "starting";
  if (model.pending === "stop") return "stopping";
  if (model.ready) return "running";
  return "stopped";
}

function setBadge(el, status) {
  if (!el) return;
  el.className = `badge server-status status-${status}`;
  el.textContent = LABELS[status];
}

/** One `<div><dt>…</dt><dd>…</dd></div>` of the facts list. */
function fact(term, text, ddClass) {
  const div = document.createElement("div");
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = text;
  if (ddClass) dd.className = ddClass;
  div.append(dt, dd);
  return div;
}

/**
 * The spawner's facts about a server, as the page first showed them (macros.html), from its
 * model: gone once it stopped, and no time left (nor warning) once it is stopping.
 */
function renderFacts(name, model, status) {
  const slot = [...document.querySelectorAll(".server-facts-slot")].find((s) => s.dataset.server === name);
  if (!slot || !spawnerKind) return;
  const facts = status === "stopped" ? null : model?.[spawnerKind];
  const shown = slot.querySelector(".server-facts");
  if (status === "stopping" && !facts && shown) {
    // Stop was just clicked: the job stays listed until it is gone, its time left goes now.
    shown.querySelector(".time-left")?.parentElement.remove();
    delete shown.dataset.endTime;
    return;
  }
  shown?.remove();
  if (!facts || typeof facts !== "object") return;
  const dl = document.createElement("dl");
  dl.className = "server-facts small mb-0 mt-2";
  if (facts.system) dl.append(fact("System", facts.system_title || facts.system, "server-system"));
  if (facts.job_id) dl.append(fact("Job", String(facts.job_id)));
  if (facts.partition) dl.append(fact("Partition", facts.partition));
  if (facts.nodes) dl.append(fact("Nodes", facts.node_list ? `${facts.nodes} (${facts.node_list})` : String(facts.nodes)));
  const allocation = allocationText(facts);
  if (allocation) dl.append(fact("Allocation", allocation, "allocation"));
  if (facts.pending && status === "pending") dl.append(fact("Queue", facts.pending, "pending-reason"));
  if (facts.end_time && status === "running") {
    dl.dataset.endTime = facts.end_time;
    const left = fact("Time left", "", "time-left");
    left.querySelector("dd").setAttribute("aria-live", "off");
    dl.append(left);
  }
  if (dl.children.length) slot.append(dl);
  slot.querySelector(".end-signal")?.remove();
  if (facts.end_signal && facts.end_time && status === "running") {
    // The job's trap on Slurm's end signal told the hub: Slurm stops the server soon.
    const banner = document.createElement("div");
    banner.className = "alert alert-danger end-signal small mt-2 mb-0";
    banner.setAttribute("role", "alert");
    const at = document.createElement("time");
    at.className = "end-clock";
    at.dateTime = facts.end_time;
    banner.append(`Your server${name ? ` ${name}` : ""} will be stopped by Slurm at `, at, ": save your work.");
    slot.append(banner);
  }
}

/** "2 CPUs, 512M per node, 1 GPU per node" (macros.html's `allocation`). */
function allocationText(f) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const parts = [];
  if (f.cpus) parts.push(plural(f.cpus, "CPU"));
  if (f.memory_per_node) parts.push(`${f.memory_per_node} per node`);
  if (f.gpus_per_node) parts.push(`${plural(f.gpus_per_node, "GPU")} per node`);
  return parts.join(", ");
}

function renderDefault(model) {
  const status = statusOf(model);
  setBadge(document.getElementById("default-status"), status);
  const active = status !== "stopped";
  document.getElementById("stop").classList.toggle("d-none", !active || status === "stopping");
  const start = document.getElementById("start");
  start.querySelector(".label").textContent = active ? "My Server" : "Start My Server";
  start.href = status === "running" ? model.url : `${hubPrefix}spawn/${seg(user)}`;
  renderFacts("", model, status);
  tick();
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
  renderFacts(name, model, status);
  tick();
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
  } catch (e) {
    // A passing network hiccup: try again at the next tick.
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
  for (const t of document.querySelectorAll(".end-signal time.end-clock")) {
    t.textContent = new Date(t.dateTime).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }
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
