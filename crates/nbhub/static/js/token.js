// The token page: request a token (shown once, and listed at once), revoke tokens.
import { api, seg, showError, busy, humanizeTimes } from "./nbhub.js";

const page = document.getElementById("token-page");
const user = page.dataset.user;
const errorBox = document.getElementById("token-error");
const table = document.getElementById("api-tokens-table");

/** A table cell with text (never HTML: notes are the user's). */
function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text !== undefined) td.textContent = text;
  return td;
}

/** A time cell as the page renders them, or "Never". */
function timeCell(iso) {
  const td = cell();
  if (!iso) {
    td.textContent = "Never";
    return td;
  }
  const time = document.createElement("time");
  time.className = "relative-time";
  time.setAttribute("datetime", iso);
  time.textContent = iso;
  td.append(time);
  return td;
}

/** Lists a token just made (the API's token model), first, as a reload would. */
function listToken(t) {
  const tr = document.createElement("tr");
  tr.className = "token-row";
  tr.dataset.tokenId = t.id;
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "btn btn-sm btn-danger revoke-token-btn";
  revoke.dataset.tokenId = t.id;
  revoke.textContent = "Revoke";
  const hidden = document.createElement("span");
  hidden.className = "visually-hidden";
  hidden.textContent = ` token ${t.note || t.id}`;
  revoke.append(hidden);
  const action = cell();
  action.append(revoke);
  tr.append(
    cell(t.note || "", "note-col"),
    cell((t.scopes || []).join(", "), "small"),
    timeCell(t.last_activity),
    timeCell(t.created),
    timeCell(t.expires_at),
    action,
  );
  table.tBodies[0].prepend(tr);
  humanizeTimes(tr);
  document.getElementById("api-tokens-box").classList.remove("d-none");
  document.getElementById("no-tokens").classList.add("d-none");
}

document.getElementById("request-token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(errorBox, "");
  const button = document.getElementById("request-token-btn");
  const note = document.getElementById("token-note").value.trim();
  const expires = document.getElementById("token-expiration-seconds").value;
  const scopes = document
    .getElementById("token-scopes")
    .value.split(/[\s,]+/)
    .filter(Boolean);
  const body = { note: note || "Requested via token page" };
  if (expires) body.expires_in = Number(expires);
  if (scopes.length) body.scopes = scopes;
  await busy(button, async () => {
    try {
      const reply = await api("POST", `/users/${seg(user)}/tokens`, body);
      document.getElementById("token-result").textContent = reply.token;
      document.getElementById("token-area").classList.remove("d-none");
      listToken(reply);
    } catch (e) {
      showError(errorBox, `Could not create the token: ${e.message}`);
    }
  });
});

document.getElementById("copy-token").addEventListener("click", () => {
  navigator.clipboard?.writeText(document.getElementById("token-result").textContent);
});

// One listener for every Revoke button, those of tokens listed after the page loaded too.
page.addEventListener("click", async (ev) => {
  const btn = ev.target.closest(".revoke-token-btn");
  if (!btn) return;
  await busy(btn, async () => {
    try {
      await api("DELETE", `/users/${seg(user)}/tokens/${seg(btn.dataset.tokenId)}`);
      btn.closest("tr").remove();
      if (!table.querySelector(".token-row")) {
        document.getElementById("api-tokens-box").classList.add("d-none");
        document.getElementById("no-tokens").classList.remove("d-none");
      }
    } catch (e) {
      showError(errorBox, `Could not revoke the token: ${e.message}`);
    }
  });
});
