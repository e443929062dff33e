// The admin page: add users, make admin, start/stop servers, delete users, groups.
import { api, seg, showError, busy, clock } from "./nbhub.js";

const errorBox = document.getElementById("admin-error");
const names = (text) => text.split(/[\s,]+/).filter(Boolean);

/** Runs an admin action on a button; reloads to show the result, or shows the error. */
function action(button, work, { reload = true } = {}) {
  return busy(button, async () => {
    showError(errorBox, "");
    try {
      await work();
      if (reload) window.location.reload();
    } catch (e) {
      showError(errorBox, e.message);
    }
  });
}

const serverPath = (user, server) =>
  server ? `/users/${seg(user)}/servers/${seg(server)}` : `/users/${seg(user)}/server`;

async function waitFor(user, server, done) {
  for (let i = 0; i < 240; i++) {
    const model = await api("GET", `/users/${seg(user)}`);
    if (done((model.servers || {})[server || ""])) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button");
  if (!btn) return;
  const { user, server = "", group } = btn.dataset;
  if (btn.classList.contains("start-server")) {
    action(btn, async () => {
      await api("POST", serverPath(user, server));
      await waitFor(user, server, (s) => s && s.ready);
    });
  } else if (btn.classList.contains("stop-server")) {
    action(btn, async () => {
      await api("DELETE", serverPath(user, server));
      await waitFor(user, server, (s) => !s || (!s.ready && !s.pending));
    });
  } else if (btn.classList.contains("toggle-admin")) {
    action(btn, () => api("PATCH", `/users/${seg(user)}`, { admin: btn.dataset.admin !== "true" }));
  } else if (btn.classList.contains("delete-user")) {
    if (!window.confirm(`Delete the user ${user}? Their servers are stopped.`)) return;
    action(btn, () => api("DELETE", `/users/${seg(user)}`));
  } else if (btn.classList.contains("remove-member")) {
    action(btn, () => api("DELETE", `/groups/${seg(group)}/users`, { users: [user] }));
  } else if (btn.classList.contains("delete-group")) {
    if (!window.confirm(`Delete the group ${group}?`)) return;
    action(btn, () => api("DELETE", `/groups/${seg(group)}`));
  }
});

document.getElementById("add-users-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const usernames = names(document.getElementById("add-users-names").value);
  const admin = document.getElementById("add-users-admin").checked;
  action(document.getElementById("add-users-btn"), () => api("POST", "/users", { usernames, admin }));
});

// Absent when the identity provider manages the groups.
document.getElementById("add-group-form")?.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = document.getElementById("new-group-name").value.trim();
  action(ev.submitter || ev.target.querySelector("button"), () => api("POST", `/groups/${seg(name)}`));
});

for (const form of document.querySelectorAll(".add-member-form")) {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const users = names(form.querySelector("input").value);
    action(ev.submitter || form.querySelector("button"), () =>
      api("POST", `/groups/${seg(form.dataset.group)}/users`, { users }),
    );
  });
}

// Remember the tab across the reloads that follow an action.
for (const tab of document.querySelectorAll('[data-bs-toggle="tab"]')) {
  tab.addEventListener("shown.bs.tab", () => sessionStorage.setItem("nbhub-admin-tab", tab.id));
}
const saved = sessionStorage.getItem("nbhub-admin-tab");
if (saved && window.bootstrap) window.bootstrap.Tab.getOrCreateInstance(document.getElementById(saved))?.show();

// Time left of the running servers' batch jobs, counting down.
function tick() {
  for (const td of document.querySelectorAll("#running-table td.time-left[data-end-time]")) {
    const left = (Date.parse(td.dataset.endTime) - Date.now()) / 1000;
    td.textContent = left > 0 ? clock(left) : "time is up";
  }
}
tick();
setInterval(tick, 1000);
