/* The gateway page's JWT provider editor (an unscoped admin's; the template
   leaves it out for other roles): create, edit (not renamed), delete. Every
   write is the REST API's (/api/v1/gateway/jwt-providers/...). The secret is
   write-only: the edit form never holds it, and an edit left empty omits it,
   which the API takes as "keep the stored one". A delete confirms, naming the
   routes that use the provider (the API refuses it with a 409 while any does,
   and the page shows why). Uses gateway.js's Mesh.gatewayPage (data, refresh). */
(function () {
  "use strict";
  const el = Mesh.el;
  const API = "/api/v1/gateway/jwt-providers/";
  const page = Mesh.gatewayPage;
  let form = null;

  function byId(id) { return document.getElementById(id); }
  function enc(s) { return encodeURIComponent(s); }

  /* The routes (gateway/route) whose auth names provider NAME. */
  function routesUsing(name) {
    const out = [];
    const gateways = page.data().gateways;
    for (const gw of Object.keys(gateways)) {
      for (const r of gateways[gw].routes) {
        if (r.auth.type === "jwt" && r.auth.jwt && r.auth.jwt.provider === name) out.push(gw + "/" + r.name);
      }
    }
    return out;
  }

  function docs() { return page.data().provider_docs || {}; }
  function boxes() { return Array.from(form.querySelectorAll('input[name="algorithms"]')); }
  function checked() { return boxes().filter(function (b) { return b.checked; }); }

  /* Show the field of the chosen key source; the secret's help says whether one is kept. */
  function sync() {
    const source = form.elements.source.value;
    for (const node of form.querySelectorAll("[data-source]")) node.hidden = node.dataset.source !== source;
    const kept = form.dataset.secretSet === "true";
    form.querySelector('[data-secret-help="new"]').hidden = kept;
    form.querySelector('[data-secret-help="kept"]').hidden = !kept;
    byId("provider-secret").setAttribute("aria-describedby", kept ? "provider-secret-kept" : "provider-secret-help");
    byId("provider-secret").placeholder = kept ? "(stored: leave empty to keep it)" : "";
  }

  /* HS* take a secret and only a secret; the others take public keys. */
  function algorithmsChanged() {
    const picked = checked();
    if (!picked.length) return;
    const hmac = picked.every(function (b) { return "hmac" in b.dataset; });
    const asymmetric = picked.every(function (b) { return !("hmac" in b.dataset); });
    const source = form.elements.source;
    if (hmac) source.value = "secret";
    else if (asymmetric && source.value === "secret") source.value = "jwks";
    sync();
  }

  function open(name) {
    const doc = name ? docs()[name] || null : null;
    Mesh.clearErrors(form);
    form.reset();
    const f = form.elements;
    f.original.value = name || "";
    f.name.value = doc ? doc.name : "";
    f.name.readOnly = Boolean(doc); // providers are not renamed
    const algorithms = doc ? doc.algorithms : [];
    for (const b of boxes()) b.checked = algorithms.indexOf(b.value) >= 0;
    f.issuer.value = doc ? doc.issuer : "";
    f.audience.value = doc ? doc.audience : "";
    f.source.value = !doc ? "secret" : doc.jwks_url ? "jwks_url" : doc.jwks ? "jwks" : "secret";
    f.secret.value = ""; // never filled: the page does not have it
    f.jwks.value = doc && doc.jwks ? JSON.stringify(doc.jwks, null, 2) : "";
    f.jwks_url.value = doc ? doc.jwks_url : "";
    f.leeway_s.value = doc ? doc.leeway_s : "";
    f.consumer_claim.value = doc ? doc.consumer_claim : "";
    form.dataset.secretSet = String(Boolean(doc && doc.secret_set));
    sync();
    byId("provider-title").textContent = doc ? "Edit JWT provider " + doc.name : "New JWT provider";
    byId("provider-dialog").showModal();
    (doc ? f.issuer : f.name).focus();
  }

  /* The form as a provider document (what POST and PUT take): only the chosen
     key source; an empty secret is left out (an edit keeps the stored one). */
  function read() {
    const f = form.elements;
    const body = {
      name: f.name.value.trim(),
      algorithms: checked().map(function (b) { return b.value; }),
      issuer: f.issuer.value.trim(),
      audience: f.audience.value.trim(),
    };
    const source = f.source.value;
    if (source === "secret") {
      if (f.secret.value !== "") body.secret = f.secret.value;
    } else if (source === "jwks") {
      const text = f.jwks.value.trim();
      if (!text) throw Mesh.fieldError("jwks", "paste the JWKS: {\"keys\": [...]}");
      try { body.jwks = JSON.parse(text); } catch (e) { throw Mesh.fieldError("jwks", "not JSON: " + e.message); }
    } else {
      body.jwks_url = f.jwks_url.value.trim();
    }
    if (f.leeway_s.value.trim() !== "") body.leeway_s = Mesh.number(f.leeway_s);
    if (f.consumer_claim.value.trim() !== "") body.consumer_claim = f.consumer_claim.value.trim();
    return body;
  }

  /* The API files "which key source" errors under jwks; show them at the field in view. */
  function placed(errors) {
    const source = form.elements.source.value;
    if (!errors || typeof errors !== "object" || !errors.jwks || source === "jwks") return errors;
    const out = Object.assign({}, errors);
    out[source] = [].concat(out[source] || [], errors.jwks);
    delete out.jwks;
    return out;
  }

  async function save() {
    const body = read();
    const original = form.elements.original.value;
    try {
      if (original) {
        await Mesh.api(API + enc(original) + "/", { method: "PUT", body: body });
      } else {
        await Mesh.api(API, { method: "POST", body: body });
      }
    } catch (e) {
      if (e.status === 400) throw Mesh.badRequest(placed(e.data));
      if (e.status === 409) throw Mesh.badRequest({ name: [e.message] });
      if (e.status === 404) throw Mesh.badRequest({ detail: "JWT provider " + original + " is gone: cancel to see the list as it is" });
      throw e;
    }
    await page.refresh();
  }

  async function remove(name) {
    const users = routesUsing(name);
    const ok = await Mesh.confirm({
      title: "Delete JWT provider " + name + "?",
      danger: true,
      confirmLabel: "Delete provider",
      body: users.length ?
        [el("p", null, "Routes still use it: " + users.join(", ") + ". Point them at another provider or another auth first; the API refuses the delete while any does.")] :
        [el("p", null, "No route uses it: no request is affected. Its keys" +
          (docs()[name] && docs()[name].secret_set ? " (the stored secret)" : "") +
          " go with it; a new provider of that name needs them again.")],
    });
    if (!ok) return;
    try { await Mesh.api(API + enc(name) + "/", { method: "DELETE" }); page.showError(""); }
    catch (e) {
      if (e.status === 409) page.showError("Not deleted: " + e.message + ". Change those routes' auth first.");
      else if (e.status !== 404) page.showError(e.message);
    }
    await page.refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    form = Mesh.formDialog(byId("provider-dialog"), { submit: save });
    form.elements.source.addEventListener("change", sync);
    for (const b of boxes()) b.addEventListener("change", algorithmsChanged);
    // Rows are redrawn by refreshes: one listener for the card's buttons.
    document.addEventListener("click", function (event) {
      const b = event.target.closest("#providers-card button");
      if (!b) return;
      if (b.id === "new-provider") open(null);
      else if (b.dataset.editProvider) open(b.dataset.editProvider);
      else if (b.dataset.deleteProvider) remove(b.dataset.deleteProvider);
    });
  });
})();
