/* The gateway page's editors (an unscoped admin's; the template leaves them out
   for other roles): gateways, their routes (edited in the table read, with its
   version: a 409 keeps the form and explains), consumers, and consumer keys —
   a new key is shown once, in a dialog with a copy button, and never again.
   Deletes confirm, naming what depends on the object. Every write is the REST
   API's (/api/v1/gateway/...); the page then re-reads its cards. JWT providers
   are gateway-providers.js's, over Mesh.gatewayPage. */
(function () {
  "use strict";
  const el = Mesh.el;
  const G = Mesh.gatewayForm;
  const API = "/api/v1/gateway/";
  let data = null; // the page's gateway-data: tables with versions, consumers

  function byId(id) { return document.getElementById(id); }
  function enc(s) { return encodeURIComponent(s); }

  function readData(root) {
    const node = (root || document).getElementById("gateway-data");
    data = node ? JSON.parse(node.textContent) : { gateways: {}, consumers: {}, providers: [], services: [] };
    byId("gateway-service-names").replaceChildren.apply(byId("gateway-service-names"),
      data.services.map(function (s) { return el("option", { value: s }); }));
    const providers = byId("route-jwt-provider");
    providers.replaceChildren.apply(providers, [el("option", { value: "" }, "— choose —")].concat(
      data.providers.map(function (p) { return el("option", { value: p }, p); })));
  }

  function showError(message) {
    const box = byId("gateway-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  /* Re-read the page and swap its cards (and the data the editors start from). */
  async function refresh() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("gateway-live");
    if (fresh) byId("gateway-live").innerHTML = fresh.innerHTML;
    readData(document);
  }

  function apiError(status, body) {
    const error = new Error("refused");
    error.status = status;
    error.data = body;
    return error;
  }

  /* Who names consumer NAME (routes allowing it), and which key routes it can use. */
  function routesNaming(name) {
    const out = [];
    for (const gw of Object.keys(data.gateways)) {
      for (const r of data.gateways[gw].routes) {
        if ((r.auth.consumers || []).indexOf(name) >= 0) out.push(gw + "/" + r.name);
      }
    }
    return out;
  }

  function keyRoutes(name) {
    const out = [];
    for (const gw of Object.keys(data.gateways)) {
      for (const r of data.gateways[gw].routes) {
        const allowed = r.auth.consumers || [];
        if (r.auth.type === "key" && (!allowed.length || allowed.indexOf(name) >= 0)) out.push(gw + "/" + r.name);
      }
    }
    return out;
  }

  function pathText(path) {
    const kind = Object.keys(path)[0];
    return kind + " " + path[kind];
  }

  // -- routes ------------------------------------------------------------------

  let routeForm = null;
  let opened = null; // {gateway, version, routes} of the table the dialog was opened on

  function openRoute(gateway, name) {
    const table = data.gateways[gateway];
    opened = { gateway: gateway, version: table.version, routes: table.routes };
    const route = name ? table.routes.find(function (r) { return r.name === name; }) : null;
    Mesh.clearErrors(routeForm);
    G.fill(routeForm, route);
    routeForm.elements.gateway.value = gateway;
    routeForm.elements.original.value = name || "";
    byId("route-title").textContent = name ? "Edit route " + name + " of " + gateway + " (table v" + table.version + ")"
      : "New route of " + gateway;
    byId("route-dialog").showModal();
    routeForm.elements.name.focus();
  }

  /* The nested errors of a table PUT ({"routes": {"3": {...}}}) for the route at INDEX. */
  function routeErrors(body, index) {
    if (body && body.routes && typeof body.routes === "object" && !Array.isArray(body.routes)) {
      const mine = body.routes[index] || body.routes[String(index)];
      if (mine) return mine;
    }
    return body;
  }

  async function saveRoute(form) {
    const route = G.read(form);
    const gateway = form.elements.gateway.value;
    const original = form.elements.original.value;
    if (!original) {
      try {
        await Mesh.api(API + enc(gateway) + "/routes/", { method: "POST", body: route });
      } catch (e) {
        if (e.status === 409) throw apiError(400, { name: [e.message] });
        throw e;
      }
      await refresh();
      return;
    }
    const index = opened.routes.findIndex(function (r) { return r.name === original; });
    const routes = opened.routes.slice();
    if (index < 0) throw apiError(400, { detail: "route " + original + " is no longer in the table: cancel and look again" });
    routes[index] = route;
    try {
      await Mesh.api(API + enc(gateway) + "/routes/", { method: "PUT", body: { version: opened.version, routes: routes } });
    } catch (e) {
      if (e.status === 400) throw apiError(400, routeErrors(e.data, index));
      if (e.status !== 409) throw e;
      // Someone changed the table since it was read: keep the form, take theirs as the base.
      const latest = await Mesh.api(API + enc(gateway) + "/routes/");
      const stillThere = latest.routes.some(function (r) { return r.name === original; });
      opened = { gateway: gateway, version: latest.version, routes: latest.routes };
      throw apiError(400, { detail: "The route table of " + gateway + " was changed by someone else since you opened it (now v" +
        latest.version + "). " + (stillThere ? "Your edits are still in the form: save again to apply them to v" + latest.version + ", or cancel."
          : "Route " + original + " is gone from it; cancel to see the table as it is.") });
    }
    await refresh();
  }

  async function deleteRoute(gateway, name) {
    const route = data.gateways[gateway].routes.find(function (r) { return r.name === name; });
    const hosts = route.hosts.length ? route.hosts.join(", ") : "any host";
    const ok = await Mesh.confirm({
      title: "Delete route " + name + " of " + gateway + "?",
      danger: true,
      confirmLabel: "Delete route",
      body: [el("p", null, "Requests to " + hosts + ", path " + pathText(route.path) + " stop going to service " +
        route.service + (route.subset ? " (subset " + route.subset + ")" : "") +
        " within a second: the gateway answers them with the next matching route, or 404."),
        route.auth.consumers.length ? el("p", null, "Consumers " + route.auth.consumers.join(", ") + " and their keys stay.") : null],
    });
    if (!ok) return;
    try {
      await Mesh.api(API + enc(gateway) + "/routes/" + enc(name) + "/", { method: "DELETE" });
      showError("");
    } catch (e) {
      if (e.status !== 404) { showError(e.message); return; }
    }
    await refresh();
  }

  // -- gateways ----------------------------------------------------------------

  async function createGateway(form) {
    await Mesh.api(API, { method: "POST", body: { name: form.elements.name.value.trim(), description: form.elements.description.value } });
    await refresh();
  }

  async function deleteGateway(gateway) {
    const table = data.gateways[gateway];
    const section = document.querySelector('section[data-gateway="' + gateway + '"]');
    const agents = Array.from(section.querySelectorAll("h2 .chip")).map(function (c) { return c.textContent; });
    const ok = await Mesh.confirm({
      title: "Delete gateway " + gateway + "?",
      danger: true,
      confirmLabel: "Delete gateway and its " + table.routes.length + " route(s)",
      body: [el("p", null, "Its route table goes with it: " + (table.routes.length ?
        table.routes.map(function (r) { return r.name + " → " + r.service; }).join(", ") : "no route") + "."),
        el("p", null, agents.length ? "Agents serving it (" + agents.join(", ") + ") will have no route: every request gets 404."
          : "No agent serves it.")],
    });
    if (!ok) return;
    try { await Mesh.api(API + enc(gateway) + "/", { method: "DELETE" }); showError(""); }
    catch (e) { if (e.status !== 404) { showError(e.message); return; } }
    await refresh();
  }

  // -- consumers and keys ------------------------------------------------------

  let consumerForm = null;

  function openConsumer(name) {
    const c = name ? data.consumers[name] : null;
    Mesh.clearErrors(consumerForm);
    consumerForm.reset();
    const f = consumerForm.elements;
    f.original.value = name || "";
    f.name.value = c ? c.name : "";
    f.name.readOnly = Boolean(c); // consumers are not renamed
    f.description.value = c ? c.description : "";
    f.tags.value = c ? c.tags.join(", ") : "";
    f.jwt_subjects.value = c ? c.jwt_subjects.join(", ") : "";
    byId("consumer-title").textContent = c ? "Edit consumer " + c.name : "New consumer";
    byId("consumer-dialog").showModal();
    (c ? f.description : f.name).focus();
  }

  async function saveConsumer(form) {
    const f = form.elements;
    const body = { description: f.description.value, tags: Mesh.splitList(f.tags.value), jwt_subjects: Mesh.splitList(f.jwt_subjects.value) };
    if (f.original.value) {
      await Mesh.api(API + "consumers/" + enc(f.original.value) + "/", { method: "PATCH", body: body });
    } else {
      body.name = f.name.value.trim();
      try { await Mesh.api(API + "consumers/", { method: "POST", body: body }); }
      catch (e) { if (e.status === 409) throw apiError(400, { name: [e.message] }); throw e; }
    }
    await refresh();
  }

  async function deleteConsumer(name) {
    const users = routesNaming(name);
    const keys = data.consumers[name].keys.length;
    const ok = await Mesh.confirm({
      title: "Delete consumer " + name + "?",
      danger: true,
      confirmLabel: "Delete consumer",
      body: users.length ?
        [el("p", null, "Routes still name it: " + users.join(", ") + ". Take it out of their allowed consumers first; the API refuses the delete while any does.")] :
        [el("p", null, "No route names it. Its " + keys + " key(s) stop working at once" +
          (keyRoutes(name).length ? " on " + keyRoutes(name).join(", ") : "") + ".")],
    });
    if (!ok) return;
    try { await Mesh.api(API + "consumers/" + enc(name) + "/", { method: "DELETE" }); showError(""); }
    catch (e) { showError(e.status === 409 ? "Not deleted: " + e.message + "." : e.message); }
    await refresh();
  }

  let keyForm = null;

  function openKey(consumer) {
    Mesh.clearErrors(keyForm);
    keyForm.reset();
    keyForm.elements.consumer.value = consumer;
    byId("key-title").textContent = "New key for " + consumer;
    byId("key-dialog").showModal();
    keyForm.elements.description.focus();
  }

  async function createKey(form) {
    const consumer = form.elements.consumer.value;
    const created = await Mesh.api(API + "consumers/" + enc(consumer) + "/keys/",
      { method: "POST", body: { description: form.elements.description.value } });
    // The dialog that opened this one closes first; then the key, once.
    setTimeout(function () { showKey(created); }, 0);
  }

  function showKey(created) {
    const dialog = byId("key-shown-dialog");
    const value = byId("key-shown-value");
    byId("key-shown-consumer").textContent = created.consumer + " (" + created.prefix + "…)";
    value.value = created.key;
    byId("key-copy-state").textContent = "";
    dialog.showModal();
    value.focus();
    value.select();
    dialog.addEventListener("close", function () {
      value.value = ""; // not kept in the page once closed
      refresh();
    }, { once: true });
  }

  async function copyKey() {
    const value = byId("key-shown-value");
    const state = byId("key-copy-state");
    try {
      await navigator.clipboard.writeText(value.value);
      state.textContent = "Copied to the clipboard.";
    } catch (e) {
      value.select();
      state.textContent = document.execCommand && document.execCommand("copy") ? "Copied to the clipboard." :
        "Select the key and copy it (Ctrl+C).";
    }
  }

  async function revokeKey(consumer, prefix) {
    const routes = keyRoutes(consumer);
    const ok = await Mesh.confirm({
      title: "Revoke key " + prefix + "… of " + consumer + "?",
      danger: true,
      confirmLabel: "Revoke key",
      body: [el("p", null, "Clients sending it get 401 within a second" + (routes.length ? " on " + routes.join(", ") : "") +
        ". It cannot be restored: a new key is a new secret.")],
    });
    if (!ok) return;
    try { await Mesh.api(API + "consumers/" + enc(consumer) + "/keys/" + enc(prefix) + "/", { method: "DELETE" }); showError(""); }
    catch (e) { if (e.status !== 404) { showError(e.message); return; } }
    await refresh();
  }

  // What gateway-providers.js shares: the page's data, its refresh, its error line.
  Mesh.gatewayPage = { data: function () { return data; }, refresh: refresh, showError: showError };

  document.addEventListener("DOMContentLoaded", function () {
    routeForm = Mesh.formDialog(byId("route-dialog"), { submit: saveRoute });
    routeForm.addEventListener("change", function () { G.sync(routeForm); });
    routeForm.elements["cors.origins"].addEventListener("input", function () { G.sync(routeForm); });
    consumerForm = Mesh.formDialog(byId("consumer-dialog"), { submit: saveConsumer });
    keyForm = Mesh.formDialog(byId("key-dialog"), { submit: createKey });
    Mesh.formDialog(byId("gateway-dialog"), {
      openers: [byId("new-gateway")],
      prepare: function (f) { f.reset(); },
      submit: createGateway,
    });
    byId("key-copy").addEventListener("click", copyKey);
    readData(document);
    // Rows are redrawn by refreshes: one listener for the page's buttons.
    // Another console's write, pushed (console.js data-live): the editors start from it.
    byId("gateway-live").addEventListener("mesh:refreshed", function () { readData(document); });
    byId("gateway-live").addEventListener("click", function (event) {
      const b = event.target.closest("button");
      if (!b) return;
      const d = b.dataset;
      if (d.newRoute) openRoute(d.newRoute, null);
      else if (d.editRoute) openRoute(d.gw, d.editRoute);
      else if (d.deleteRoute) deleteRoute(d.gw, d.deleteRoute);
      else if (d.deleteGateway) deleteGateway(d.deleteGateway);
      else if (b.id === "new-consumer") openConsumer(null);
      else if (d.editConsumer) openConsumer(d.editConsumer);
      else if (d.deleteConsumer) deleteConsumer(d.deleteConsumer);
      else if (d.newKey) openKey(d.newKey);
      else if (d.revokeKey) revokeKey(d.consumer, d.revokeKey);
    });
  });
})();
