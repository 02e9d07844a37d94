/* The routes and subsets editor on the service page (admins of the service
   only: the template leaves it out for other roles). The document is edited in
   a form (routes-form.js, routes-form-routes.js) or, as an advanced toggle, as
   JSON: both over one document object, so neither loses what the other does
   not show. Review shows the diff against the version read, a save sends that
   version (a 409 keeps the edit and explains), the API's 400 lands at the field
   it names, and the version history rolls back in one click. Every write is
   the REST API's (/api/v1/services/{name}/routes/...). */
(function () {
  "use strict";
  const el = Mesh.el;
  let name = null;
  let url = null;
  let current = null; // the API's answer as last read
  let base = null; // its document: what the edit is compared with
  let form = null;
  let area = null;
  let doc = null; // the document being edited: the form's (routes-form.js edits it in place)
  let jsonView = false; // the JSON view is showing: its text is the edit
  let lastErrors = null; // the last 400, placed again when the view changes

  function byId(id) { return document.getElementById(id); }

  function documentOf(answer) {
    return { subsets: answer.subsets || {}, routes: answer.routes || [] };
  }

  function pretty(doc) { return JSON.stringify(doc, null, 2); }

  /* Lists as objects keyed by index, so the diff names "routes.0.split.1.weight",
     the same paths the API's errors use (an empty list too: a first route is
     "routes.0"). */
  function indexed(value) {
    if (Array.isArray(value)) {
      if (value.length && value.every(function (v) { return v === null || typeof v !== "object"; })) return value;
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

  /* The edit: the form's document, or the JSON view's text (which may not parse). */
  function mine() { return jsonView ? parsed() : doc; }

  function dirty() {
    try { return changes(base, mine()).length > 0; } catch (e) { return true; }
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

  function edit(value) {
    doc = JSON.parse(JSON.stringify(value));
    area.value = pretty(doc);
    Mesh.routesForm.render(doc);
  }

  /* Between the form and the JSON view. Back to the form takes the text, when
     it parses and has a shape the form can draw; else the view stays. */
  function setView(json) {
    if (json === jsonView) return;
    Mesh.clearErrors(form);
    if (!json) {
      let value;
      try { value = parsed(); } catch (e) { Mesh.showErrors(form, e.data); return; }
      const problem = Mesh.routesForm.unformable(value);
      if (problem) {
        Mesh.showErrors(form, { document: [problem + ": the form cannot show it; fix it here, or review to get the API's answer."] });
        return;
      }
      doc = value;
      Mesh.routesForm.render(doc);
    } else {
      area.value = pretty(doc);
    }
    jsonView = json;
    byId("routes-structured").hidden = json;
    byId("routes-json").hidden = !json;
    const toggle = byId("routes-view");
    toggle.textContent = json ? "Back to the form" : "Edit as JSON (advanced)";
    toggle.setAttribute("aria-pressed", String(json));
    (json ? area : toggle).focus();
    if (lastErrors) placeErrors(lastErrors);
  }

  async function load() {
    const answer = await Mesh.api(url);
    show(answer);
    edit(base);
    Mesh.clearErrors(form);
    lastErrors = null;
    byId("routes-conflict").hidden = true;
    loadVersions();
  }

  /* The API's errors ({"routes.0.split.1.subset": [...]}) at the most precise
     holder the form has: the field itself, else the part or route that claims
     the path (the message then names the rest of it), else the form's alert.
     In the JSON view, every message at the document, with its path. */
  function placeErrors(data) {
    lastErrors = data;
    const placed = {};
    const view = jsonView ? byId("routes-json") : byId("routes-structured");
    function holderOf(path) {
      const parts = path.split(".");
      while (parts.length) {
        const key = CSS.escape(parts.join("."));
        if (view.querySelector('[name="' + key + '"], [data-errors-for~="' + key + '"]')) return parts.join(".");
        parts.pop();
      }
      return null;
    }
    function put(path, messages) {
      const top = path === "non_field_errors" || path === "detail";
      if (jsonView) {
        placed.document = (placed.document || []).concat(messages.map(function (m) { return (top ? "" : path + ": ") + m; }));
        return;
      }
      const holder = top ? null : holderOf(path);
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
    lastErrors = null;
    let edited;
    try { edited = mine(); } catch (e) { Mesh.showErrors(form, e.data); return; }
    const changed = changes(base, edited);
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
      const saved = await Mesh.api(url, { method: "PUT", body: Object.assign({}, edited, { version: current.version }) });
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

  function loadVersions() {
    return Mesh.versionHistory({
      body: document.querySelector("#routes-versions tbody"),
      url: url + "versions/",
      current: function () { return current.version; },
      changed: function (older, newer) { return changes(older, newer).map(function (c) { return c.path; }); },
      rollback: rollback,
    });
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

  async function loadServiceNames() {
    try {
      const page = await Mesh.api("/api/v1/services/?page_size=1000");
      const list = byId("routes-service-names");
      list.replaceChildren.apply(list, page.results
        .filter(function (s) { return s.name !== name; })
        .map(function (s) { return el("option", { value: s.name }); }));
    } catch (e) { /* suggestions only */ }
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
    Mesh.routesForm.start({
      changed: function () { area.value = pretty(doc); },
      instances: function () { return (window.meshService && window.meshService.instances) || []; },
    });
    form.addEventListener("submit", review);
    byId("routes-view").addEventListener("click", function () { setView(!jsonView); });
    byId("routes-rebase").addEventListener("click", rebase);
    byId("routes-reload").addEventListener("click", function () { load(); notice(""); });
    byId("routes-discard").addEventListener("click", function () {
      edit(base);
      Mesh.clearErrors(form);
      lastErrors = null;
      result("Back to v" + current.version + ".");
    });
    load().catch(function (e) { notice("Could not load the routes: " + e.message); });
    loadServiceNames();
    if (Mesh.serviceLive) Mesh.serviceLive.on("service", function (message) {
      if (message.data.name === name) followLive();
    });
  });
})();
