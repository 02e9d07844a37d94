/* Traffic policy editor: read the policy, edit every option, review the diff,
   save with the version read (a 409 keeps the edits and offers to re-apply them
   on the newer version), the version history and one-click rollback. Every
   write is the REST API's (/api/v1/services/{name}/policy/...). */
(function () {
  "use strict";
  const el = Mesh.el;
  const P = Mesh.policyForm;
  const name = JSON.parse(document.getElementById("policy-service").textContent);
  const url = "/api/v1/services/" + encodeURIComponent(name) + "/policy/";
  let current = null; // the API's document as last read
  let base = null; // its writable part: what the form's edits are relative to
  let form = null;

  function byId(id) { return document.getElementById(id); }

  function notice(text) {
    const node = byId("policy-notice");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function show(doc) {
    current = doc;
    base = P.writable(doc);
    byId("policy-version").textContent = "v" + doc.version;
    byId("policy-version").dataset.version = doc.version;
    byId("policy-meta").replaceChildren.apply(byId("policy-meta"), doc.version ?
      ["version " + doc.version + " saved ", el("time", { datetime: doc.updated_at }, Mesh.clock(doc.updated_at)),
        doc.updated_by ? " by " + doc.updated_by : ""] :
      ["Defaults: this policy has never been saved."]);
  }

  async function load() {
    const doc = await Mesh.api(url);
    show(doc);
    P.fill(form, doc);
    Mesh.clearErrors(form);
    byId("policy-conflict").hidden = true;
    loadVersions();
  }

  function dirty() { return Mesh.diff(base, P.read(form)).length > 0; }

  async function review(event) {
    event.preventDefault();
    Mesh.clearErrors(form);
    const mine = P.read(form);
    const changes = Mesh.diff(base, mine);
    const result = byId("policy-result");
    if (!changes.length) { result.textContent = "Nothing to save: the form matches v" + current.version + "."; return; }
    const ok = await Mesh.confirm({
      title: "Save the policy of " + name + "?",
      confirmLabel: "Save",
      body: [el("p", null, changes.length + " change(s) to v" + current.version + ":"), Mesh.diffTable(changes)],
    });
    if (!ok) return;
    result.textContent = "Saving…";
    try {
      const saved = await Mesh.api(url, { method: "PUT", body: Object.assign({ version: current.version }, mine) });
      show(saved);
      P.fill(form, saved);
      result.textContent = "Saved as v" + saved.version + ".";
      notice("");
      loadVersions();
    } catch (e) {
      result.textContent = "";
      if (e.status === 409) conflict(e.message);
      else Mesh.showErrors(form, e.status === 400 ? e.data : { detail: e.message });
    }
  }

  function conflict(message) {
    byId("policy-conflict-text").textContent = "Not saved: someone saved this policy after you opened v" +
      current.version + " (" + message + "). Your edits are still in the form.";
    byId("policy-conflict").hidden = false;
    byId("policy-reapply").focus();
  }

  /* Load the newest version and lay the user's edits over it. */
  async function reapply() {
    const mine = P.read(form);
    const latest = await Mesh.api(url);
    const merged = P.rebase(base, mine, P.writable(latest));
    show(latest);
    P.fill(form, merged.doc);
    byId("policy-conflict").hidden = true;
    notice("Loaded v" + latest.version + " and re-applied your changes (" + (merged.reapplied.join(", ") || "none") + ")" +
      (merged.clashes.length ? "; v" + latest.version + " had also changed " + merged.clashes.join(", ") +
        ": yours are in the form, review before saving." : ". Review and save."));
    loadVersions();
    byId("policy-review").focus();
  }

  function loadVersions() {
    return Mesh.versionHistory({
      body: document.querySelector("#policy-versions tbody"),
      url: url + "versions/",
      current: function () { return current.version; },
      changed: function (older, newer) {
        return Mesh.diff(P.writable(older), P.writable(newer)).map(function (c) { return c.path; });
      },
      rollback: rollback,
      buttonClass: "needs-admin",
      empty: "No saved version yet: the service runs on the defaults.",
    });
  }

  async function rollback(version) {
    const changes = Mesh.diff(base, P.writable(version.document));
    const ok = await Mesh.confirm({
      title: "Roll back " + name + " to v" + version.version + "?",
      confirmLabel: "Roll back to v" + version.version,
      body: [el("p", null, "Restores v" + version.version + " as a new version." +
        (dirty() ? " Your unsaved edits in the form are discarded." : "")), Mesh.diffTable(changes)],
    });
    if (!ok) return;
    try {
      await Mesh.api(url + "rollback/", { method: "POST", body: { version: version.version } });
      await load();
      byId("policy-result").textContent = "Rolled back to v" + version.version + " (now v" + current.version + ").";
    } catch (e) {
      byId("policy-result").textContent = "Rollback refused: " + e.message;
    }
  }

  /* Another console (or meshctl) saved: follow it unless the user is editing. */
  async function followLive() {
    let latest;
    try { latest = await Mesh.api(url); } catch (e) { return; }
    if (!current || latest.version === current.version) return;
    if (dirty()) {
      notice("v" + latest.version + " was saved elsewhere while you edit v" + current.version +
        ". Saving will ask you to re-apply your changes on it.");
      return;
    }
    show(latest);
    P.fill(form, latest);
    notice("Updated to v" + latest.version + ", saved elsewhere.");
    loadVersions();
  }

  async function loadServiceNames() {
    try {
      const page = await Mesh.api("/api/v1/services/?page_size=1000");
      byId("service-names").replaceChildren.apply(byId("service-names"), page.results
        .filter(function (s) { return s.name !== name; })
        .map(function (s) { return el("option", { value: s.name }); }));
    } catch (e) { /* suggestions only */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    form = byId("policy-form");
    form.addEventListener("submit", review);
    form.addEventListener("change", function () { P.sync(form); });
    byId("policy-reapply").addEventListener("click", reapply);
    byId("policy-discard").addEventListener("click", function () {
      P.fill(form, current);
      Mesh.clearErrors(form);
      byId("policy-result").textContent = "Back to v" + current.version + ".";
    });
    load().catch(function (e) { notice("Could not load the policy: " + e.message); });
    loadServiceNames();
    Mesh.live().on("service", function (message) {
      if (message.data.name === name) followLive();
    }).subscribe({ topic: "service", name: name });
  });
})();
