// The spawn form: show fields only when the field they depend on has a matching value, the
// live facts of the chosen option, and the "Estimate start" button.
const form = document.getElementById("spawn_form");

function currentValue(name) {
  const el = form.elements.namedItem(name);
  if (!el) return undefined;
  if (el.type === "checkbox") return el.checked ? "true" : "false";
  return el.value;
}

function applyVisibility() {
  for (const box of form.querySelectorAll("[data-visible-when-field]")) {
    const values = JSON.parse(box.dataset.visibleWhenValues || "[]").map(String);
    const show = values.includes(String(currentValue(box.dataset.visibleWhenField)));
    box.hidden = !show;
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

form.addEventListener("change", () => {
  applyVisibility();
  applyChoiceInfo();
});
applyVisibility();
applyChoiceInfo();

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
