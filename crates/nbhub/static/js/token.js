// The token page: request a token (shown once), revoke tokens.
import { api, seg, showError, busy } from "./nbhub.js";

const page = document.getElementById("token-page");
const user = page.dataset.user;
const errorBox = document.getElementById("token-error");

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
    } catch (e) {
      showError(errorBox, `Could not create the token: ${e.message}`);
    }
  });
});

document.getElementById("copy-token").addEventListener("click", () => {
  navigator.clipboard?.writeText(document.getElementById("token-result").textContent);
});

for (const btn of document.querySelectorAll(".revoke-token-btn")) {
  btn.addEventListener("click", async () => {
    await busy(btn, async () => {
      try {
        await api("DELETE", `/users/${seg(user)}/tokens/${seg(btn.dataset.tokenId)}`);
        btn.closest("tr").remove();
      } catch (e) {
        showError(errorBox, `Could not revoke the token: ${e.message}`);
      }
    });
  });
}
