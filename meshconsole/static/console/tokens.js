/* Enrollment tokens on the agents page (staff): list, create (shown once), revoke.
   Every write goes through the REST API, as meshctl's do. */
(function () {
  "use strict";
  const table = document.querySelector("#token-table tbody");
  const form = document.getElementById("token-form");
  if (!table || !form) return;
  const error = document.getElementById("token-error");

  function state(t) {
    if (t.active) return "active";
    if (t.revoked) return "revoked";
    return "expired or used up";
  }

  function row(t) {
    const tr = document.createElement("tr");
    tr.dataset.prefix = t.prefix;
    const cells = [t.prefix, t.description || "—", state(t),
      t.max_uses ? t.uses + " / " + t.max_uses : String(t.uses),
      t.expires_at ? Mesh.clock(t.expires_at) : "never",
      t.services ? t.services.join(", ") : "any",
      t.gateways && t.gateways.length ? t.gateways.join(", ") : "—"];
    cells.forEach(function (text, i) {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0) td.className = "mono";
      if (i === 3) td.className = "num";
      tr.appendChild(td);
    });
    const action = document.createElement("td");
    if (t.active) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "danger";
      button.textContent = "Revoke";
      button.addEventListener("click", async function () {
        if (!window.confirm("Revoke token " + t.prefix + "…? Agents already enrolled keep working; no new agent can join with it.")) return;
        try {
          await Mesh.api("/api/v1/agents/enrollment-tokens/" + encodeURIComponent(t.prefix) + "/revoke/", { method: "POST" });
          await load();
        } catch (e) { error.textContent = e.message; }
      });
      action.appendChild(button);
    }
    tr.appendChild(action);
    return tr;
  }

  async function load() {
    const data = await Mesh.api("/api/v1/agents/enrollment-tokens/");
    const tokens = Array.isArray(data) ? data : (data.results || []);
    table.replaceChildren();
    if (!tokens.length) {
      const tr = document.createElement("tr");
      tr.className = "empty-row";
      tr.innerHTML = '<td colspan="8">No enrollment token yet. Create one above, or run <code>meshconsole enrolltoken</code>.</td>';
      table.appendChild(tr);
      return;
    }
    tokens.forEach(function (t) { table.appendChild(row(t)); });
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.textContent = "";
    const body = { description: form.elements.description.value };
    if (form.elements.ttl.value) body.ttl = form.elements.ttl.value;
    if (form.elements.max_uses.value) body.max_uses = Number(form.elements.max_uses.value);
    const services = Mesh.splitList(form.elements.services.value);
    if (services.length) body.services = services;
    const gateways = Mesh.splitList(form.elements.gateways.value);
    if (gateways.length) body.gateways = gateways;
    try {
      const created = await Mesh.api("/api/v1/agents/enrollment-tokens/", { method: "POST", body: body });
      document.getElementById("token-value").textContent = created.token;
      document.getElementById("token-new").hidden = false;
      form.reset();
      await load();
    } catch (e) {
      error.textContent = e.message;
    }
  });

  load().catch(function (e) { error.textContent = e.message; });
})();
