// Picket console: live updates. Every 2 s the page is fetched again and
// each of its `[data-live]` sections replaced by the fresh one, unless the
// operator is working in it (a box ticked, a field focused or filled in).
// The request carries `X-Picket-Poll`, so it does not keep an idle session
// alive; when the session has ended the page reloads and shows sign-in.
"use strict";

(function () {
  const INTERVAL_MS = 2000;

  function busy(section) {
    if (section.contains(document.activeElement) && document.activeElement !== document.body) return true;
    for (const input of section.querySelectorAll("input, textarea, select")) {
      if ((input.type === "checkbox" || input.type === "radio") ? input.checked : input.value !== input.defaultValue) {
        return true;
      }
    }
    return false;
  }

  async function refresh() {
    const sections = document.querySelectorAll("[data-live][id]");
    if (sections.length === 0) return;
    if (document.hidden || Array.from(sections).some(busy)) return;
    let response;
    try {
      response = await fetch(location.href, {
        headers: { "X-Picket-Poll": "1" },
        credentials: "same-origin",
        redirect: "manual",
        cache: "no-store",
      });
    } catch (_) {
      return; // coordinator unreachable: try again next time
    }
    if (response.type === "opaqueredirect") {
      location.reload();
      return;
    }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const section of document.querySelectorAll("[data-live][id]")) {
      const next = fresh.getElementById(section.id);
      if (next && !busy(section) && next.innerHTML !== section.innerHTML) {
        section.replaceWith(document.importNode(next, true));
      }
    }
  }

  setInterval(refresh, INTERVAL_MS);
})();
