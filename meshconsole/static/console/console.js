/* meshconsole: helpers shared by every console page (no build step, no deps). */
(function () {
  "use strict";

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
    }
    return "";
  }

  /* fetch() for the REST API: session cookie, CSRF header, JSON both ways
     (OPTIONS: method, body, headers). */
  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    if (opts.method !== "GET" && opts.method !== "HEAD") headers["X-CSRFToken"] = cookie("csrftoken");
    const response = await fetch(path, {
      method: opts.method,
      body: opts.body,
      headers: headers,
      credentials: "same-origin",
    });
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { detail: text.slice(0, 200) }; }
    }
    if (!response.ok) {
      const error = new Error(errorText(data) || response.status + " " + response.statusText);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  function errorText(data) {
    if (!data) return "";
    if (typeof data === "string") return data;
    if (data.detail) return String(data.detail);
    return Object.keys(data).map(function (k) { return k + ": " + [].concat(data[k]).join(" "); }).join("; ");
  }

  /* Build a DOM element: el("td", {class: "num", dataset: {x: 1}}, "text", child). */
  function el(tag, attrs) {
    const node = document.createElement(tag);
    const a = attrs || {};
    for (const key of Object.keys(a)) {
      const value = a[key];
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === undefined || child === null || child === false) continue;
      for (const c of [].concat(child)) {
        if (c === undefined || c === null || c === false) continue;
        node.append(c instanceof Node ? c : document.createTextNode(String(c)));
      }
    }
    return node;
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return Math.round(seconds) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  /* The one date format of the console, as the server renders it: UTC,
     "2026-01-01 12:00:00" (the title says UTC). */
  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().slice(0, 19).replace("T", " ");
  }

  /* <time datetime> elements: absolute ones in clock()'s format, data-ago ones
     relative with the absolute time as their title. */
  function formatTimes(root) {
    for (const node of (root || document).querySelectorAll("time[datetime]")) {
      const iso = node.getAttribute("datetime");
      if (node.hasAttribute("data-ago")) {
        node.textContent = ago(iso);
        node.title = clock(iso) + " UTC";
      } else {
        node.textContent = clock(iso);
        node.title = "UTC";
      }
    }
  }

  function ms(value) {
    return value === null || value === undefined ? "—" : (value < 10 ? value.toFixed(1) : Math.round(value)) + " ms";
  }

  /* Milliseconds as the API spells durations: 30000 -> "30s", 1500 -> "1500ms". */
  function duration(ms) {
    if (ms % 60000 === 0 && ms >= 60000) return ms / 60000 + "m";
    if (ms % 1000 === 0) return ms / 1000 + "s";
    return ms + "ms";
  }

  function percent(ratio) {
    return (100 * (ratio || 0)).toFixed(ratio && ratio < 0.01 ? 2 : 1) + "%";
  }

  /*
   * One websocket per page (ws/live/), re-opened with backoff; subscriptions
   * are replayed after every reconnect, so each handler receives a snapshot.
   */
  function live() {
    const subscriptions = [];
    const handlers = {};
    const indicator = document.getElementById("live-state");
    let socket = null;
    let delay = 500;

    function state(name, title) {
      if (!indicator) return;
      indicator.dataset.state = name;
      indicator.title = title;
    }

    function open() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + "/ws/live/");
      state("connecting", "connecting…");
      socket.addEventListener("open", function () {
        delay = 500;
        state("live", "live");
        for (const message of subscriptions) socket.send(JSON.stringify(message));
      });
      socket.addEventListener("message", function (event) {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "error") console.warn("live:", message.message);
        for (const handler of handlers[message.type] || []) handler(message);
      });
      socket.addEventListener("close", function () {
        state("down", "disconnected; retrying");
        socket = null;
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      });
    }

    return {
      on: function (type, handler) {
        (handlers[type] = handlers[type] || []).push(handler);
        return this;
      },
      subscribe: function (message) {
        subscriptions.push(Object.assign({ type: "subscribe" }, message));
        if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(subscriptions[subscriptions.length - 1]));
        if (!socket) open();
        return this;
      },
    };
  }

  /* Re-read the page (its own URL) and swap each of NODES whose HTML changed;
     a swapped node gets "mesh:refreshed". */
  async function swapFromServer(nodes) {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const node of nodes) {
      const fresh = doc.getElementById(node.id);
      const current = document.getElementById(node.id);
      if (fresh && current && fresh.innerHTML !== current.innerHTML) {
        current.innerHTML = fresh.innerHTML;
        formatTimes(current);
        current.dispatchEvent(new CustomEvent("mesh:refreshed", { bubbles: true }));
      }
    }
  }

  /* Elements with data-refresh="ms" are re-fetched from the same URL and swapped. */
  function autoRefresh() {
    for (const node of document.querySelectorAll("[data-refresh][id]")) {
      const period = Math.max(1000, parseInt(node.dataset.refresh, 10) || 5000);
      setInterval(async function () {
        if (document.hidden) return;
        try { await swapFromServer([node]); } catch (e) { /* offline for a moment: next tick */ }
      }, period);
    }
  }

  /*
   * Elements with data-live="kind …" (security, gateway, gateway-auth: what the
   * server's changes topic names) are swapped as data-refresh does, when the
   * server says a change of that kind committed — on every open console, within
   * a second of the write. The socket's "subscribed" after a reconnect re-reads
   * too (what changed while it was down). One re-read at a time; a change that
   * comes during one asks for another.
   */
  function liveChanges() {
    const nodes = Array.from(document.querySelectorAll("[data-live][id]"));
    if (!nodes.length) return;
    const kinds = new Set();
    for (const node of nodes) for (const k of node.dataset.live.split(/\s+/)) if (k) kinds.add(k);
    const subscribed = new Set();
    let running = false;
    let again = false;
    async function reread() {
      if (running) { again = true; return; }
      running = true;
      try {
        do {
          again = false;
          try { await swapFromServer(nodes); } catch (e) { /* the next change or reconnect re-reads */ }
        } while (again);
      } finally {
        running = false;
        document.body.dataset.liveRead = String(Date.now());
      }
    }
    const socket = live()
      .on("changed", function (message) { if (kinds.has(message.kind)) reread(); })
      .on("subscribed", function (message) {
        if (subscribed.has(message.kind)) reread();
        subscribed.add(message.kind);
        if (subscribed.size === kinds.size) document.body.dataset.liveSubscribed = "1";
      });
    for (const kind of kinds) socket.subscribe({ topic: "changes", kind: kind });
  }

  /* Services list: filter rows as the user types (the form also works server-side). */
  function serviceSearch() {
    const input = document.getElementById("service-search");
    const card = document.getElementById("services-card");
    if (!input || !card) return;
    function apply() {
      const terms = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const row of card.querySelectorAll("tr[data-search]")) {
        const match = terms.every(function (t) { return row.dataset.search.includes(t); });
        row.hidden = !match;
        if (match) shown++;
      }
      const none = document.getElementById("no-match");
      if (none) none.hidden = shown > 0 || card.querySelectorAll("tr[data-search]").length === 0;
    }
    input.addEventListener("input", apply);
    card.addEventListener("mesh:refreshed", apply);
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    formatTimes(document);
    autoRefresh();
    liveChanges();
    serviceSearch();
    for (const select of document.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", function () { select.form.submit(); });
    }
  });

  window.Mesh = { api: api, cookie: cookie, el: el, ago: ago, clock: clock, formatTimes: formatTimes, ms: ms, duration: duration, percent: percent, live: live };
})();
