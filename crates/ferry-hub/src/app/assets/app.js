// ferry web app: the little the pages need beyond HTML forms. Served from
// the hub (the Content-Security-Policy allows no inline script); the pages
// work without it, less conveniently.
"use strict";

// Times: the server writes UTC; show them in the reader's own zone.
function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.title = t.textContent;
      t.textContent = d.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit",
      });
    }
  }
}

// Collection boxes: suggestions from the user's endpoints as they type,
// a list of options to click or reach with the arrow keys.
function collectionSuggestions(input) {
  const list = document.createElement("ul");
  list.setAttribute("role", "listbox");
  list.id = input.id + "-suggestions";
  list.className = "suggestions";
  list.hidden = true;
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("list");
  input.insertAdjacentElement("afterend", list);
  let asked = 0;

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
  }
  // The id goes to the hub (another owner's endpoint has no name of
  // yours); the page that answers shows its name.
  function pick(ep) {
    input.value = ep.id;
    close();
    input.form.requestSubmit();
  }
  async function suggest() {
    const q = input.value.trim();
    const mine = ++asked;
    let found = [];
    try {
      const r = await fetch("/api/v1/endpoints?filter_scope=all&q=" + encodeURIComponent(q),
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (r.ok) found = await r.json();
    } catch (e) { found = []; }
    if (mine !== asked) return;
    list.replaceChildren();
    for (const ep of found.slice(0, 20)) {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.tabIndex = -1;
      li.textContent = ep.display_name;
      li.dataset.id = ep.id;
      if (ep.owner) {
        const owner = document.createElement("span");
        owner.className = "owner";
        owner.setAttribute("aria-hidden", "true");
        owner.textContent = " (" + ep.owner + ")";
        li.appendChild(owner);
      }
      const status = document.createElement("span");
      status.className = ep.connected ? "on" : "off";
      status.setAttribute("aria-hidden", "true");
      status.textContent = ep.connected ? " connected" : " not connected";
      li.appendChild(status);
      li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(ep); });
      li.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") { ev.preventDefault(); pick(ep); }
        else if (ev.key === "ArrowDown" && li.nextElementSibling) { ev.preventDefault(); li.nextElementSibling.focus(); }
        else if (ev.key === "ArrowUp") { ev.preventDefault(); (li.previousElementSibling || input).focus(); }
        else if (ev.key === "Escape") { close(); input.focus(); }
      });
      list.appendChild(li);
    }
    list.hidden = found.length === 0;
    input.setAttribute("aria-expanded", String(found.length > 0));
  }
  let timer = 0;
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, 120); });
  input.addEventListener("focus", () => { if (!input.value) suggest(); });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" && !list.hidden && list.firstElementChild) {
      ev.preventDefault();
      list.firstElementChild.focus();
    } else if (ev.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(() => {
    if (!list.contains(document.activeElement)) close();
  }, 150));
}

// A task's page: while the task runs, fetch its changing part again.
function liveTask(section) {
  const url = section.getAttribute("data-live");
  let rounds = 0;
  async function poll() {
    const live = section.querySelector("#live");
    if (!live || live.getAttribute("data-final") === "true" || rounds++ > 43200) return;
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (r.ok) {
        const html = await r.text();
        const holder = document.createElement("div");
        holder.innerHTML = html;
        const fresh = holder.querySelector("#live");
        if (fresh) {
          live.replaceWith(fresh);
          localTimes(fresh);
        }
      }
    } catch (e) { /* the next round tries again */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  for (const input of document.querySelectorAll("input[data-collection]")) collectionSuggestions(input);
  for (const section of document.querySelectorAll("[data-live]")) liveTask(section);
});
