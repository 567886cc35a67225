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

// Rule upload: the chosen files are read here and posted as JSON with the
// session's CSRF token; compile errors are listed beside the form, and
// the files stay chosen, so nothing is lost on a refusal.
(function () {
  const form = document.getElementById("rules-upload");
  if (!form) return;
  const result = document.getElementById("upload-result");
  const csrf = document.querySelector("meta[name=csrf-token]").content;

  function show(message, details, isError) {
    result.replaceChildren();
    const p = document.createElement("p");
    p.className = isError ? "error" : "notice";
    p.textContent = message;
    result.append(p);
    if (Array.isArray(details) && details.length > 0) {
      const list = document.createElement("ul");
      list.className = "errors";
      for (const d of details) {
        const item = document.createElement("li");
        const file = document.createElement("code");
        file.textContent = String(d.file || "");
        const error = document.createElement("span");
        error.className = "error";
        error.textContent = String(d.error || "");
        item.append(file, ": ", error);
        list.append(item);
      }
      result.append(list);
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const input = form.querySelector("input[type=file]");
    const button = form.querySelector("button[type=submit]");
    const files = [];
    for (const file of input.files) {
      files.push({ name: file.name, source: await file.text() });
    }
    button.disabled = true;
    show("Compiling " + files.length + (files.length === 1 ? " file…" : " files…"), [], false);
    try {
      const response = await fetch("/detection/rules", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ files: files }),
        credentials: "same-origin",
        redirect: "manual",
      });
      if (response.type === "opaqueredirect") {
        show("Your session ended: sign in again, then upload.", [], true);
        return;
      }
      const body = await response.json().catch(function () {
        return { message: "Unexpected answer from the coordinator (" + response.status + ")." };
      });
      if (response.status === 201) {
        location.assign("/detection?uploaded=" + encodeURIComponent(body.version));
        return;
      }
      show(body.message || "Refused (" + response.status + ").", body.details, true);
    } catch (_) {
      show("The coordinator could not be reached; nothing was uploaded.", [], true);
    } finally {
      button.disabled = false;
    }
  });
})();
