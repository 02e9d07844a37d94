/* The security page: access rules (create, edit with the version read, delete),
   the default action, "would it be allowed?", root rotation. Every write is the
   REST API's (identity/api/); the page then re-reads its cards. */
(function () {
  "use strict";
  const el = Mesh.el;

  function showError(message) {
    const box = document.getElementById("security-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  /* Re-read the page and swap the live parts (as data-refresh does, at once). */
  async function refresh() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["default-card", "rules-live", "root-table", "mtls-modes"]) {
      const fresh = doc.getElementById(id);
      const current = document.getElementById(id);
      if (fresh && current) { current.innerHTML = fresh.innerHTML; Mesh.formatTimes(current); }
    }
  }

  function headersText(headers) {
    return Object.keys(headers || {}).map(function (k) { return k + ": " + headers[k]; }).join("\n");
  }

  function ruleBody(form) {
    const body = {
      source: form.elements.source.value.trim(),
      destination: form.elements.destination.value.trim(),
      action: form.elements.action.value,
      description: form.elements.description.value,
    };
    const http = {};
    const methods = Mesh.splitList(form.elements["http.methods"].value);
    if (methods.length) http.methods = methods;
    const prefix = form.elements["http.path_prefix"].value.trim();
    if (prefix) http.path_prefix = prefix;
    const headers = {};
    const lines = form.elements["http.headers"].value.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n];
      if (!line.trim()) continue;
      const at = line.indexOf(":");
      if (at < 1) {
        const error = new Error("bad header line");
        error.status = 400;
        error.data = { http: { headers: ["line " + (n + 1) + ': expected "name: value"'] } };
        throw error;
      }
      headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    if (Object.keys(headers).length) http.headers = headers;
    body.http = Object.keys(http).length ? http : null;
    return body;
  }

  function fill(form, rule) {
    form.reset();
    form.elements.id.value = rule ? rule.id : "";
    form.elements.version.value = rule ? rule.version : "";
    form.elements.source.value = rule ? rule.source : "";
    form.elements.destination.value = rule ? rule.destination : "";
    form.elements.action.value = rule ? rule.action : "allow";
    const http = (rule && rule.http) || {};
    form.elements["http.methods"].value = (http.methods || []).join(", ");
    form.elements["http.path_prefix"].value = http.path_prefix || "";
    form.elements["http.headers"].value = headersText(http.headers);
    form.elements.description.value = rule ? rule.description || "" : "";
    document.getElementById("rule-title").textContent = rule
      ? "Edit rule " + rule.source + " → " + rule.destination + " (version " + rule.version + ")"
      : "New access rule";
  }

  function ruleText(rule) {
    return rule.source + " → " + rule.destination + ": " + rule.action;
  }

  async function saveRule(form) {
    const body = ruleBody(form);
    const id = form.elements.id.value;
    if (!id) {
      await Mesh.api("/api/v1/intentions/", { method: "POST", body: body });
    } else {
      body.version = Number(form.elements.version.value);
      try {
        await Mesh.api("/api/v1/intentions/" + encodeURIComponent(id) + "/", { method: "PATCH", body: body });
      } catch (e) {
        if (e.status !== 409) throw e;
        // Someone saved this rule since it was read: keep the form, show theirs.
        const latest = await Mesh.api("/api/v1/intentions/" + encodeURIComponent(id) + "/");
        form.elements.version.value = latest.version;
        const conflict = new Error("conflict");
        conflict.status = 400;
        conflict.data = { detail: "This rule was changed by someone else since you opened it (now version " +
          latest.version + ": " + ruleText(latest) + "). Your edits are still in the form: save again to overwrite, or cancel." };
        throw conflict;
      }
    }
    await refresh();
  }

  async function deleteRule(rule) {
    const ok = await Mesh.confirm({
      title: "Delete rule " + rule.source + " → " + rule.destination + "?",
      danger: true,
      confirmLabel: "Delete rule",
      body: [el("p", null, "This " + rule.action + " rule stops applying on every agent within a second; " +
        "calls it matched then fall to the next rule or the default action.")],
    });
    if (!ok) return;
    try {
      await Mesh.api("/api/v1/intentions/" + encodeURIComponent(rule.id) + "/",
        { method: "DELETE", headers: { "If-Match": '"' + rule.version + '"' } });
    } catch (e) {
      if (e.status === 409) { showError("The rule changed since the page was drawn; it was not deleted. Look again."); await refresh(); return; }
      if (e.status !== 404) { showError(e.message); return; }
    }
    showError("");
    await refresh();
  }

  async function switchDefault(button) {
    const text = document.getElementById("default-text");
    const to = button.dataset.to;
    const allowRules = Number(button.dataset.allowRules || 0);
    const body = to === "deny"
      ? [el("p", null, "Every call that no allow rule matches will be refused by the destination's agent " +
          "(HTTP 403 denied-by-policy, TCP connections closed), within a second, on every host."),
         el("p", null, allowRules + " allow rule" + (allowRules === 1 ? "" : "s") + " exist" + (allowRules === 1 ? "s" : "") + ". " +
          "Add the allow rules your callers need first; the topology shows denied calls per edge.")]
      : [el("p", null, "Every call that no deny rule matches will be allowed.")];
    const ok = await Mesh.confirm({
      title: "Switch the default action to " + to + "?", danger: to === "deny",
      confirmLabel: "Switch to " + to, body: body,
    });
    if (!ok) return;
    try {
      await Mesh.api("/api/v1/intentions/default/", { method: "PUT",
        body: { default_action: to, version: Number(text.dataset.version) } });
      showError("");
    } catch (e) {
      showError(e.status === 409 ? "Someone changed the default action meanwhile; the page now shows it." : e.message);
    }
    await refresh();
  }

  async function rotate() {
    const ok = await Mesh.confirm({
      title: "Rotate the CA root?", confirmLabel: "Rotate",
      body: [el("p", null, "A new root joins the trust bundle and signs every new certificate; agents renew onto it " +
        "while the old root stays trusted, so no call fails. Retire the old root once it has no live leaves (meshconsole ca retire).")],
    });
    if (!ok) return;
    try { await Mesh.api("/api/v1/ca/rotate/", { method: "POST", body: {} }); showError(""); }
    catch (e) { showError(e.message); }
    await refresh();
  }

  async function check(form) {
    const params = new URLSearchParams();
    for (const name of ["source", "destination", "method", "path"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    const result = document.getElementById("check-result");
    const answer = await Mesh.api("/api/v1/intentions/check/?" + params.toString());
    const rule = answer.rule ? " by rule #" + answer.rule.id + " (" + ruleText(answer.rule) + ")" : "";
    result.replaceChildren(
      el("span", { class: "status " + (answer.allowed ? "passing" : "critical") }, answer.allowed ? "allowed" : "denied"),
      " " + (answer.reason || "") + rule);
    result.dataset.allowed = String(answer.allowed);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const checkForm = document.getElementById("check-form");
    checkForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      Mesh.clearErrors(checkForm);
      try { await check(checkForm); }
      catch (e) { Mesh.showErrors(checkForm, e.status === 400 ? e.data : { detail: e.message }); }
    });
    const dialog = document.getElementById("rule-dialog");
    if (!dialog) return; // read only
    const form = Mesh.formDialog(dialog, {
      openers: [document.getElementById("new-rule")],
      prepare: function (f) { fill(f, null); },
      submit: saveRule,
    });
    // Rows are redrawn by refreshes: one listener on the card.
    document.getElementById("rules-card").addEventListener("click", function (event) {
      const edit = event.target.closest("[data-edit]");
      const del = event.target.closest("[data-delete]");
      if (edit) {
        Mesh.clearErrors(form);
        fill(form, JSON.parse(edit.dataset.edit));
        dialog.showModal();
        form.elements.source.focus();
      } else if (del) {
        deleteRule(JSON.parse(del.dataset.delete));
      }
    });
    document.getElementById("default-card").addEventListener("click", function (event) {
      const button = event.target.closest("#default-switch");
      if (button) switchDefault(button);
    });
    const rotateButton = document.getElementById("ca-rotate");
    if (rotateButton) rotateButton.addEventListener("click", rotate);
  });
})();
