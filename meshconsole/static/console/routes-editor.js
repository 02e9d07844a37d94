/* The routes and subsets editor on the service page (admins of the service
   only: the template leaves it out for other roles). The document is edited as
   JSON, with the splits' weights also as fields; review shows the diff against
   the version read, a save sends that version (a 409 keeps the edit and
   explains), the API's 400 lands at the route and field it names, and the
   version history rolls back in one click. Every write is the REST API's
   (/api/v1/services/{name}/routes/...). */
(function () {
  "use strict";
  const el = Mesh.el;
  let name = null;
  let url = null;
  let current = null; // the API's answer as last read
  let base = null; // its document: what the edit is compared with
  let form = null;
  let area = null;

  function byId(id) { return document.getElementById(id); }

  function documentOf(answer) {
    return { subsets: answer.subsets || {}, routes: answer.routes || [] };
  }

  function pretty(doc) { return JSON.stringify(doc, null, 2); }

  /* Lists as objects keyed by index, so the diff names "routes.0.split.1.weight",
     the same paths the API's errors use. */
  function indexed(value) {
    if (Array.isArray(value)) {
      if (value.every(function (v) { return v === null || typeof v !== "object"; })) return value;
      const out = {};
      value.forEach(function (v, i) { out[i] = indexed(v); });
      return out;
    }
    if (value !== null && typeof value === "object") {
      const out = {};
      for (const key of Object.keys(value)) out[key] = indexed(value[key]);
      return out;
    }
    return value;
  }

  function changes(before, after) { return Mesh.diff(indexed(before), indexed(after)); }

  function notice(text) {
    const node = byId("routes-notice");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function result(text) { byId("routes-result").textContent = text || ""; }

  /* The textarea's document, or a 400-shaped error at the textarea. */
  function parsed() {
    let doc;
    try {
      doc = JSON.parse(area.value);
    } catch (e) {
      const error = new Error("not JSON");
      error.status = 400;
      error.data = { document: ["not valid JSON: " + e.message] };
      throw error;
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
      const error = new Error("not an object");
      error.status = 400;
      error.data = { document: ['expected an object: {"subsets": {...}, "routes": [...]}'] };
      throw error;
    }
    return doc;
  }

  function dirty() {
    try { return changes(base, parsed()).length > 0; } catch (e) { return true; }
  }

  function show(answer) {
    current = answer;
    base = documentOf(answer);
    const version = byId("routes-version");
    version.textContent = "v" + answer.version;
    version.dataset.version = answer.version;
    byId("routes-meta").replaceChildren.apply(byId("routes-meta"), answer.version ?
      ["saved ", el("time", { datetime: answer.updated_at }, Mesh.clock(answer.updated_at)),
        answer.updated_by ? " by " + answer.updated_by : ""] : ["never saved: every request goes to the whole service"]);
  }

  function edit(doc) {
    area.value = pretty(doc);
    renderSplits();
  }

  async function load() {
    const answer = await Mesh.api(url);
    show(answer);
    edit(base);
    Mesh.clearErrors(form);
    byId("routes-conflict").hidden = true;
    loadVersions();
  }

  function targetText(t) { return t.subset !== undefined ? "subset " + t.subset : "service " + t.service; }

  /* One fieldset per route with a weight field per split target; the route's
     fieldset also takes the API's errors about the rest of that route. */
  function renderSplits() {
    const holder = byId("routes-splits");
    let doc;
    try { doc = parsed(); } catch (e) { return; } // the JSON's error shows on review
    const routes = Array.isArray(doc.routes) ? doc.routes : [];
    if (!routes.length) {
      holder.replaceChildren(el("p", { class: "muted small" }, "No route: add one below (\"Add a route\") or in the document."));
      return;
    }
    holder.replaceChildren.apply(holder, routes.map(function (route, i) {
      const split = route && Array.isArray(route.split) ? route.split : [];
      const total = split.reduce(function (sum, t) { return sum + (Number(t && t.weight) || 0); }, 0);
      const rows = split.map(function (t, j) {
        const id = "route-" + i + "-split-" + j;
        const weight = t && t.weight !== undefined ? t.weight : "";
        return el("div", { class: "split-row" },
          el("label", { for: id }, t && typeof t === "object" ? targetText(t) : "target " + j),
          el("input", { type: "number", id: id, name: "routes." + i + ".split." + j + ".weight", min: 0, value: weight,
            class: "split-weight", dataset: { route: i, target: j } }),
          el("span", { class: "muted small percent" },
            total > 0 ? Math.round(1000 * (Number(weight) || 0) / total) / 10 + " %" : ""));
      });
      const title = "#" + (i + 1) + " " + (route && route.name ? route.name : "(no name)");
      return el("fieldset", { class: "field route-edit", dataset: { routeIndex: i, errorsFor: "routes." + i } },
        el("legend", null, title), rows.length ? rows : el("p", { class: "muted small" }, "no split target"));
    }));
  }

  /* A weight field changed: write it into the document. */
  function onWeight(event) {
    const input = event.target.closest(".split-weight");
    if (!input) return;
    let doc;
    try { doc = parsed(); } catch (e) { Mesh.showErrors(form, e.data); return; }
    const route = doc.routes[Number(input.dataset.route)];
    route.split[Number(input.dataset.target)].weight = Mesh.number(input);
    area.value = pretty(doc);
    // Percentages in place: redrawing the fields would take the focus away.
    const total = route.split.reduce(function (sum, t) { return sum + (Number(t.weight) || 0); }, 0);
    const fieldset = input.closest("fieldset");
    for (const field of fieldset.querySelectorAll(".split-weight")) {
      const share = field.parentNode.querySelector(".percent");
      share.textContent = total > 0 ? Math.round(1000 * (Number(field.value) || 0) / total) / 10 + " %" : "";
    }
  }

  /* The API's errors ({"routes.0.split.1.subset": [...]}) at the most precise
     holder there is: the field itself, else its route's fieldset (the message
     then names the rest of the path), else the document. */
  function placeErrors(data) {
    const placed = {};
    function holderOf(path) {
      const parts = path.split(".");
      while (parts.length) {
        const key = parts.join(".");
        if (form.querySelector('[name="' + key + '"], [data-errors-for~="' + key + '"]')) return key;
        parts.pop();
      }
      return null;
    }
    function put(path, messages) {
      const holder = path === "non_field_errors" || path === "detail" ? null : holderOf(path);
      const key = holder || "non_field_errors";
      const rest = holder && holder !== path ? path.slice(holder.length + 1) : (holder ? "" : path);
      const text = messages.map(function (m) { return (rest && rest !== "non_field_errors" && rest !== "detail" ? rest + ": " : "") + m; });
      placed[key] = (placed[key] || []).concat(text);
    }
    (function walk(value, path) {
      if (value === null || value === undefined) return;
      if (typeof value !== "object") { put(path || "detail", [String(value)]); return; }
      if (Array.isArray(value) && value.every(function (v) { return typeof v !== "object"; })) {
        put(path || "detail", value.map(String));
        return;
      }
      for (const key of Object.keys(value)) walk(value[key], path ? path + "." + key : key);
    })(data, "");
    Mesh.showErrors(form, placed);
  }

  async function review(event) {
    event.preventDefault();
    Mesh.clearErrors(form);
    let mine;
    try { mine = parsed(); } catch (e) { Mesh.showErrors(form, e.data); return; }
    const changed = changes(base, mine);
    if (!changed.length) { result("Nothing to save: the document matches v" + current.version + "."); return; }
    const ok = await Mesh.confirm({
      title: "Save the routes of " + name + "?",
      confirmLabel: "Save as v" + (current.version + 1),
      body: [el("p", null, changed.length + " change(s) to v" + current.version +
        "; agents apply the new routes within a second:"), Mesh.diffTable(changed)],
    });
    if (!ok) return;
    result("Saving…");
    try {
      const saved = await Mesh.api(url, { method: "PUT", body: Object.assign({}, mine, { version: current.version }) });
      show(saved);
      edit(base);
      result("Saved as v" + saved.version + ".");
      notice("");
      loadVersions();
      refreshPanel();
    } catch (e) {
      result("");
      if (e.status === 409) conflict(e.message);
      else if (e.status === 400) placeErrors(e.data);
      else Mesh.showErrors(form, { detail: e.message });
    }
  }

  async function conflict(message) {
    let latest = null;
    try { latest = await Mesh.api(url); } catch (e) { /* said below without it */ }
    const by = latest && latest.updated_by ? " by " + latest.updated_by : "";
    const theirs = latest ? changes(base, documentOf(latest)).map(function (c) { return c.path; }) : [];
    byId("routes-conflict-text").textContent = "Not saved: someone saved " +
      (latest ? "v" + latest.version + by : "a newer version") + " after you opened v" + current.version +
      " (" + message + ")." + (theirs.length ? " They changed " + theirs.join(", ") + "." : "") +
      " Your edit is still in the editor: compare it with the latest version before saving again, or discard it.";
    byId("routes-conflict").hidden = false;
    byId("routes-rebase").focus();
  }

  /* Keep the edit and compare it with the newest version from now on. */
  async function rebase() {
    const latest = await Mesh.api(url);
    show(latest);
    byId("routes-conflict").hidden = true;
    notice("Your edit is now compared with v" + latest.version + ": review lists every difference, " +
      "including anything of v" + latest.version + " your edit would undo.");
    loadVersions();
    byId("routes-review").focus();
  }

  function changedText(older, newer) {
    if (!older) return "first version";
    const paths = changes(older, newer).map(function (c) { return c.path; });
    if (!paths.length) return "—";
    return paths.length > 6 ? paths.slice(0, 6).join(", ") + " and " + (paths.length - 6) + " more" : paths.join(", ");
  }

  async function loadVersions() {
    const body = document.querySelector("#routes-versions tbody");
    let versions;
    try {
      versions = await Mesh.api(url + "versions/");
    } catch (e) {
      body.replaceChildren(el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, "Versions unavailable: " + e.message)));
      return;
    }
    const rows = versions.map(function (v, i) {
      const older = versions[i + 1];
      return el("tr", { dataset: { version: v.version } },
        el("td", null, "v" + v.version),
        el("td", { class: "nowrap" }, el("time", { datetime: v.created_at }, Mesh.clock(v.created_at))),
        el("td", null, v.created_by || "—"),
        el("td", { class: "small" }, changedText(older && older.document, v.document)),
        el("td", null, v.version === current.version ? el("span", { class: "muted small" }, "current") :
          el("button", { type: "button", class: "link-button", dataset: { rollback: v.version },
            onclick: function () { rollback(v); } }, "roll back")));
    });
    body.replaceChildren.apply(body, rows.length ? rows : [el("tr", { class: "empty-row" },
      el("td", { colspan: 5 }, "No saved version yet."))]);
  }

  async function rollback(version) {
    const ok = await Mesh.confirm({
      title: "Roll back the routes of " + name + " to v" + version.version + "?",
      confirmLabel: "Roll back to v" + version.version,
      body: [el("p", null, "Restores v" + version.version + " as a new version (checked again: a subset or service gone since refuses it)." +
        (dirty() ? " Your unsaved edit in the editor is discarded." : "")),
        Mesh.diffTable(changes(base, version.document))],
    });
    if (!ok) return;
    try {
      await Mesh.api(url + "versions/" + version.version + "/rollback/", { method: "POST" });
      await load();
      result("Rolled back to v" + version.version + " (now v" + current.version + ").");
      refreshPanel();
    } catch (e) {
      result("Rollback refused: " + e.message);
    }
  }

  const EXAMPLE = {
    name: "new-route",
    match: { path: { prefix: "/" } },
    split: [{ subset: "v1", weight: 90 }, { subset: "v2", weight: 10 }],
    fallback: "next",
  };

  function addRoute() {
    let doc;
    try { doc = parsed(); } catch (e) { Mesh.showErrors(form, e.data); return; }
    if (!Array.isArray(doc.routes)) doc.routes = [];
    const route = JSON.parse(JSON.stringify(EXAMPLE));
    const subsets = Object.keys(doc.subsets || {});
    if (subsets.length) route.split = [{ subset: subsets[0], weight: 100 }];
    doc.routes.push(route);
    edit(doc);
    area.focus();
  }

  /* The read-only picture above the editor, redrawn from the page. */
  async function refreshPanel() {
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("routes-panel");
      if (fresh) byId("routes-panel").innerHTML = fresh.innerHTML;
    } catch (e) { /* the editor still shows the document */ }
  }

  /* A save elsewhere (another console, meshctl): follow it unless editing. */
  async function followLive() {
    let latest;
    try { latest = await Mesh.api(url); } catch (e) { return; }
    if (!current || latest.version === current.version) return;
    refreshPanel();
    if (dirty()) {
      notice("v" + latest.version + " was saved elsewhere while you edit v" + current.version +
        ". Saving will be refused with the difference explained.");
      return;
    }
    show(latest);
    edit(base);
    notice("Updated to v" + latest.version + ", saved elsewhere.");
    loadVersions();
  }

  document.addEventListener("DOMContentLoaded", function () {
    form = byId("routes-form");
    if (!form) return; // read only: the panel alone
    name = JSON.parse(byId("service-data").textContent).name;
    url = "/api/v1/services/" + encodeURIComponent(name) + "/routes/";
    area = byId("routes-document");
    form.addEventListener("submit", review);
    byId("routes-splits").addEventListener("input", onWeight);
    area.addEventListener("change", renderSplits);
    byId("routes-add-route").addEventListener("click", addRoute);
    byId("routes-rebase").addEventListener("click", rebase);
    byId("routes-reload").addEventListener("click", function () { load(); notice(""); });
    byId("routes-discard").addEventListener("click", function () {
      edit(base);
      Mesh.clearErrors(form);
      result("Back to v" + current.version + ".");
    });
    load().catch(function (e) { notice("Could not load the routes: " + e.message); });
    if (Mesh.serviceLive) Mesh.serviceLive.on("service", function (message) {
      if (message.data.name === name) followLive();
    });
  });
})();
