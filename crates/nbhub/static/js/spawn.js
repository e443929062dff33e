// The spawn form: show fields only when the field they depend on has a matching value (and is
// shown itself: with several systems, each system's fields only while it is picked), the
// live facts of the chosen option, the limits and defaults the chosen option sets for other
// fields (a partition's nodes, run time, GPUs), and the "Estimate start" button.
const form = document.getElementById("spawn_form");

function currentValue(name) {
  const el = form.elements.namedItem(name);
  if (!el) return undefined;
  if (el.type === "checkbox") return el.checked ? "true" : "false";
  return el.value;
}

/**
 * Whether a field's box is shown: while the field it depends on has one of its values and is
 * shown itself (another system's GPU field stays hidden whatever that system's partition is).
 */
function isShown(box, seen = new Set()) {
  const dep = box?.dataset.visibleWhenField;
  if (!dep || seen.has(box)) return true;
  seen.add(box);
  const values = JSON.parse(box.dataset.visibleWhenValues || "[]").map(String);
  if (!values.includes(String(currentValue(dep)))) return false;
  return isShown(document.getElementById(`field-${dep}`), seen);
}

function applyVisibility() {
  for (const box of form.querySelectorAll("[data-visible-when-field]")) {
    const show = isShown(box);
    box.hidden = !show;
    // Hidden fields are not posted (nor estimated with).
    for (const input of box.querySelectorAll("input, select, textarea")) input.disabled = !show;
  }
}

function applyChoiceInfo() {
  for (const select of form.querySelectorAll("select")) {
    const info = document.getElementById(`${select.id}-info`);
    if (!info) continue;
    for (const li of info.querySelectorAll("li[data-choice]")) {
      li.hidden = li.dataset.choice !== select.value;
    }
  }
}

// Run times as the server reads them (nbhub_spawner::parse_clock_duration for clock fields,
// Slurm's syntax otherwise); null when not one.
function parseDuration(text, clock) {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s) * 60;
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(s);
  if (!m) return null;
  const [d, a, b, c] = [m[1], m[2], m[3], m[4]].map((x) => (x === undefined ? undefined : Number(x)));
  if (clock) {
    if (b === undefined || b > 59 || (c ?? 0) > 59 || (d !== undefined && a > 23)) return null;
    return (d ?? 0) * 86400 + a * 3600 + b * 60 + (c ?? 0);
  }
  if (d !== undefined) return d * 86400 + a * 3600 + (b ?? 0) * 60 + (c ?? 0);
  if (c !== undefined) return a * 3600 + b * 60 + c;
  return a * 60 + (b ?? 0);
}

/** Seconds as Slurm writes time limits: [d-]hh:mm:ss. */
function formatDuration(secs) {
  const two = (n) => String(n).padStart(2, "0");
  const d = Math.floor(secs / 86400);
  const rest = secs % 86400;
  const hms = `${two(Math.floor(rest / 3600))}:${two(Math.floor((rest % 3600) / 60))}:${two(rest % 60)}`;
  return d > 0 ? `${d}-${hms}` : hms;
}

// The inputs whose limits may follow a choice, with their own limits and hint.
const limited = [...form.querySelectorAll("input[data-kind]")].map((input) => {
  const hint = document.querySelector(`#opt-${CSS.escape(input.name)}-help .field-limits`);
  const num = (v) => (v === undefined || v === "" ? null : Number(v));
  return { input, hint, own: { min: num(input.dataset.min), max: num(input.dataset.max) } };
});
// Fields the user typed into: a choice's default no longer replaces their value.
const typed = new Set();
form.addEventListener("input", (ev) => typed.add(ev.target.name));

/** The limits the selected choices set for `name`, with the select that sets them. */
function chosenLimits(name) {
  for (const select of form.querySelectorAll("select")) {
    const option = select.selectedOptions[0];
    const all = option?.dataset.limits ? JSON.parse(option.dataset.limits) : null;
    if (all && all[name]) return { limits: all[name], select, option };
  }
  return null;
}

function numberOf(f, text) {
  if (f.input.dataset.kind === "duration") return parseDuration(text, f.input.dataset.clock === "true");
  return text.trim() === "" ? null : Number(text);
}

function show(f, value) {
  return f.input.dataset.kind === "duration" ? formatDuration(value) : String(value);
}

/** A `max_by` limit now: the other field's value (a hidden field counts as 0) and the max. */
function maxBy(by) {
  const other = form.elements.namedItem(by.field);
  const n = other && !other.disabled ? Number(other.value) || 0 : 0;
  return { n, max: by.max[Math.min(n, by.max.length - 1)] };
}

/** What is wrong with one field under the chosen limits (null: nothing known to be). */
function problem(f, chosen, min, max) {
  if (!chosen || f.input.disabled) return null;
  const value = numberOf(f, f.input.value);
  if (value === null || Number.isNaN(value)) return null;
  if (chosen.limits.max_by) {
    const by = maxBy(chosen.limits.max_by);
    if (by.n > 0 && value > by.max && by.max < (chosen.limits.max ?? Infinity)) {
      return chosen.limits.max_by.message.replace("{max}", by.max).replace("{value}", by.n);
    }
  }
  const label = form.querySelector(`label[for="${chosen.select.id}"]`)?.textContent.replace("*", "").trim();
  const who = `${label || chosen.select.name} ${chosen.option.value}`;
  if (max !== null && value > max) return `${who} allows at most ${show(f, max)}`;
  if (min !== null && value < min) return `${who} needs at least ${show(f, min)}`;
  return null;
}

function limitsText(f, min, max) {
  const [lo, hi] = [min, max].map((v) => (v === null || v === undefined ? null : show(f, v)));
  if (lo !== null && hi !== null) return `from ${lo} to ${hi}`;
  if (lo !== null) return `at least ${lo}`;
  if (hi !== null) return `at most ${hi}`;
  return "";
}

/** Applies the chosen limits to every field; with `newChoice`, also their defaults. */
function applyLimits(newChoice) {
  let first = null;
  for (const f of limited) {
    const chosen = chosenLimits(f.input.name);
    const lim = chosen?.limits || {};
    const min = lim.min ?? f.own.min;
    let max = lim.max ?? f.own.max;
    if (lim.max_by) max = Math.min(max ?? Infinity, maxBy(lim.max_by).max);
    if (newChoice && lim.default !== undefined && !typed.has(f.input.name)) {
      f.input.value = lim.default;
    }
    if (f.input.type === "number") {
      if (min === null) f.input.removeAttribute("min");
      else f.input.min = min;
      if (max === null) f.input.removeAttribute("max");
      else f.input.max = max;
    }
    if (f.hint) {
      const text = limitsText(f, min, max);
      f.hint.textContent = text ? `${f.hint.dataset.sep || ""}${text}` : "";
    }
    const message = problem(f, chosen, min, max);
    let box = document.getElementById(`opt-${f.input.name}-check`);
    if (message && !box) {
      box = document.createElement("div");
      box.id = `opt-${f.input.name}-check`;
      box.className = "invalid-feedback d-block field-check";
      box.setAttribute("role", "alert");
      f.input.closest(".option-field").append(box);
    }
    if (box) {
      box.textContent = message || "";
      box.hidden = !message;
    }
    const serverSaid = !!document.getElementById(`opt-${f.input.name}-error`);
    f.input.classList.toggle("is-invalid", !!message || serverSaid);
    if (message) f.input.setAttribute("aria-invalid", "true");
    else if (!serverSaid) f.input.removeAttribute("aria-invalid");
    if (message && !first) first = f.input;
  }
  return first;
}

form.addEventListener("change", (ev) => {
  applyVisibility();
  applyChoiceInfo();
  applyLimits(ev.target.tagName === "SELECT");
});
form.addEventListener("input", () => applyLimits(false));
applyVisibility();
applyChoiceInfo();
applyLimits(false);

// What the chosen option's limits refuse is refused here: no round trip to a sure 400.
form.addEventListener("submit", (ev) => {
  if (ev.submitter && ev.submitter.id !== "spawn-submit") return;
  const bad = applyLimits(false);
  if (bad) {
    ev.preventDefault();
    bad.focus();
  }
});

function formOptions() {
  const options = {};
  for (const el of form.elements) {
    if (!el.name || el.name === "_xsrf" || el.disabled) continue;
    if (el.type === "checkbox") options[el.name] = el.checked;
    else if (el.value !== "") options[el.name] = el.value;
  }
  return options;
}

const estimate = document.getElementById("estimate-btn");
if (estimate) {
  const out = document.getElementById("estimate-result");
  estimate.addEventListener("click", async () => {
    estimate.disabled = true;
    out.className = "mt-3 text-body-secondary";
    out.textContent = "Asking the scheduler…";
    try {
      const resp = await fetch(estimate.dataset.url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-XSRFToken": (window.jhdata || {}).xsrf_token || "",
        },
        body: JSON.stringify({ user_options: formOptions() }),
      });
      const answer = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(answer.message || `${resp.status} ${resp.statusText}`);
      out.className = `mt-3 alert ${answer.fits === false ? "alert-warning" : "alert-info"}`;
      out.textContent = answer.message || (answer.fits ? "It fits." : "It does not fit.");
    } catch (e) {
      out.className = "mt-3 alert alert-danger";
      out.textContent = `No estimate: ${e.message}`;
    } finally {
      estimate.disabled = false;
    }
  });
}
