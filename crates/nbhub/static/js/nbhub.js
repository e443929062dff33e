// Shared helpers of nbhub's pages: REST calls with the XSRF header, messages, relative times.
const data = window.jhdata || {};

/** The hub's prefix, e.g. "/hub/". */
export const hubPrefix = data.base_url || "/hub/";

/** `encodeURIComponent` for one path segment (a user or server name). */
export const seg = (s) => encodeURIComponent(s);

/** Calls the REST API under {hub}api; resolves to the parsed JSON (or null), throws Error(message). */
export async function api(method, path, body) {
  const init = {
    method,
    headers: { "X-XSRFToken": data.xsrf_token || "", Accept: "application/json" },
    credentials: "same-origin",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(`${hubPrefix}api${path}`, init);
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    const message = (json && json.message) || `${resp.status} ${resp.statusText}`;
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return json;
}

/** Shows `message` in the alert element `el` (or hides it when empty). */
export function showError(el, message) {
  if (!el) return;
  el.textContent = message || "";
  el.classList.toggle("d-none", !message);
  if (message) el.focus?.();
}

/** "5 minutes ago" / "in 2 hours" for an RFC 3339 time. */
export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const secs = Math.round((t - now) / 1000);
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const abs = Math.abs(secs);
  if (abs < 60) return fmt.format(secs, "second");
  if (abs < 3600) return fmt.format(Math.round(secs / 60), "minute");
  if (abs < 86400) return fmt.format(Math.round(secs / 3600), "hour");
  return fmt.format(Math.round(secs / 86400), "day");
}

/** Replaces the text of every <time class="relative-time"> with a relative time (title: the exact one). */
export function humanizeTimes(root = document) {
  for (const el of root.querySelectorAll("time.relative-time")) {
    const iso = el.getAttribute("datetime");
    el.title = new Date(iso).toLocaleString();
    el.textContent = relativeTime(iso);
  }
}

/** "1:02:03" for a number of seconds. */
export function clock(secs) {
  secs = Math.max(0, Math.floor(secs));
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** Disables a button while `work` runs. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

humanizeTimes();
