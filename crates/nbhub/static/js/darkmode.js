// The light/dark switch of every page (JupyterHub 5's, with its storage key and button id):
// the choice is kept in localStorage and applied as Bootstrap's data-bs-theme on <html>;
// without a choice the system's preference counts. Loaded in <head>, not deferred, so that
// the page is drawn in its theme from the start.
(() => {
  const KEY = "jupyterhub-bs-theme";
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const stored = () => {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null; // storage blocked: the system's preference only
    }
  };
  const preferred = () => {
    const s = stored();
    if (s === "light" || s === "dark") return s;
    return dark.matches ? "dark" : "light";
  };
  const apply = (theme) => document.documentElement.setAttribute("data-bs-theme", theme);
  apply(preferred());
  dark.addEventListener("change", () => apply(preferred()));
  window.addEventListener("DOMContentLoaded", () => {
    const toggle = document.getElementById("dark-theme-toggle");
    if (!toggle) return; // a site's page.html without the switch
    const show = () => {
      const isDark = document.documentElement.getAttribute("data-bs-theme") === "dark";
      toggle.setAttribute("aria-pressed", String(isDark));
    };
    show();
    toggle.addEventListener("click", () => {
      const next = document.documentElement.getAttribute("data-bs-theme") === "dark" ? "light" : "dark";
      try {
        localStorage.setItem(KEY, next);
      } catch (e) {
        // not kept, but switched for this page
      }
      apply(next);
      show();
    });
  });
})();
