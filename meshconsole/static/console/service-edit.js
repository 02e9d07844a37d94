/* Service page writes beyond instance control: edit the service, its health
   check, delete it (with what depends on it), and the confirmation of bulk
   actions. Every write is a REST call (/api/v1/services/...), as tooling does. */
(function () {
  "use strict";
  const el = Mesh.el;
  const OPERATOR = ["maintenance", "draining", "disabled"];
  const TAKES_OUT = { drain: true, maintenance: true, disable: true };

  function service() { return window.meshService; }
  function serviceUrl() { return "/api/v1/services/" + encodeURIComponent(service().name) + "/"; }

  /* What depends on the service: callers with recent traffic, failover referrers. */
  async function dependents() {
    try {
      return await Mesh.api("/services/" + encodeURIComponent(service().name) + "/dependents/");
    } catch (e) {
      return { callers: [], failover_referrers: [], error: e.message };
    }
  }

  /* What-if before apply (POST /api/v1/services/{name}/what-if/): the load each
     instance would get after EDIT, from the last minute's traffic, through the
     agents' own routing plan. */
  async function whatIf(edit) {
    try {
      return await Mesh.api("/api/v1/services/" + encodeURIComponent(service().name) + "/what-if/", {
        method: "POST", body: edit,
      });
    } catch (e) {
      return { error: e.message };
    }
  }
  Mesh.whatIf = whatIf;

  const ACTION_STATE = { drain: "draining", maintenance: "maintenance", disable: "disabled", enable: "enabled" };

  /* The what-if edit for ACTION on INSTANCES (weight: BODY.weight). */
  function instanceEdit(instances, action, weight) {
    const changes = {};
    instances.forEach(function (i) {
      if (action === "weight") changes[i.id] = { weight: weight };
      else if (ACTION_STATE[action]) changes[i.id] = { state: ACTION_STATE[action] };
    });
    return { instances: changes };
  }

  function rps(value) { return (Math.round(value * 10) / 10).toFixed(1); }

  /* The prediction as a table (instance, now, after) with its warnings. */
  function whatIfPanel(p) {
    if (p.error) return el("p", { class: "alert" }, "Prediction unavailable: " + p.error);
    const now = {};
    p.before.instances.forEach(function (i) { now[i.id] = i.rps; });
    const rows = p.after.instances.map(function (i) {
      const before = now[i.id] || 0;
      return el("tr", { dataset: { whatifFor: i.id } },
        el("td", null, i.address + ":" + i.port + (i.zone ? " (" + i.zone + ")" : "")),
        el("td", { class: "num" }, rps(before)),
        el("td", { class: "num", dataset: { predicted: rps(i.rps) } }, rps(i.rps)));
    });
    return el("section", { class: "what-if", dataset: { whatif: "" } },
      el("h3", null, "What if: predicted load (last " + p.window_seconds + " s of traffic, " +
        rps(p.before.rps) + " rps)"),
      p.callers.length ? null : el("p", { class: "muted" }, "No traffic in the last minute: nothing to predict."),
      p.after.served_by !== p.service ? el("p", { class: "alert", dataset: { servedBy: p.after.served_by } },
        "Served by " + p.after.served_by + " (failover)") : null,
      el("table", { class: "what-if-table" },
        el("thead", null, el("tr", null, el("th", null, "instance"), el("th", null, "now rps"), el("th", null, "after rps"))),
        el("tbody", null, rows)),
      p.warnings.length ? el("ul", { class: "alert what-if-warnings" },
        p.warnings.map(function (w) { return el("li", null, w); })) : null,
      p.affected_callers.length ? el("p", null, "Callers affected: ",
        names(p.affected_callers)) : null);
  }

  /* One instance's action: confirmed with the prediction when there is traffic
     (or it takes the last serving instance out). Resolves true to go on. */
  Mesh.confirmInstance = async function (instance, action, weight) {
    const s = service();
    const last = TAKES_OUT[action] && serving(instance) &&
      !s.instances.some(function (i) { return i.id !== instance.id && serving(i); });
    if (!ACTION_STATE[action] && action !== "weight") return true;
    const prediction = await whatIf(instanceEdit([instance], action, weight));
    if (!last && (prediction.error || !prediction.callers.length)) return true;
    const deps = last ? await dependents() : null;
    const label = action === "weight" ? "weight " + weight : action;
    return Mesh.confirm({
      title: label + " " + instance.address + ":" + instance.port + "?",
      danger: Boolean(last || TAKES_OUT[action]),
      confirmLabel: label + " " + instance.address + ":" + instance.port,
      body: [
        last ? el("p", { class: "alert", dataset: { outOfRotation: "" } }, instance.address + ":" + instance.port +
          " is the only instance receiving traffic: this takes " + s.name + " out of rotation.") : null,
        whatIfPanel(prediction),
        deps ? el("ul", { class: "deps" }, dependentItems(deps)) : null,
      ],
    });
  };

  function names(list) {
    return list.length ? list.map(function (n) { return el("code", { class: "dep" }, n); }) : "none";
  }

  function dependentItems(deps) {
    return [
      el("li", { dataset: { deps: "callers" } }, "Callers (traffic in the last hour): ", names(deps.callers)),
      el("li", { dataset: { deps: "failover" } }, "Services failing over to it: ", names(deps.failover_referrers)),
      deps.error ? el("li", { class: "alert" }, "Dependents unavailable: " + deps.error) : null,
    ];
  }

  function fillServiceForm(form) {
    const s = service();
    form.elements.protocol.value = s.protocol;
    form.elements.description.value = s.description || "";
    form.elements.tags.value = (s.tags || []).join(", ");
    form.elements.drain_timeout.value = s.drain_timeout || "";
    form.elements.mtls_mode.value = s.mtls_mode || "";
  }

  function fillCheckForm(form) {
    const c = service().check;
    const field = function (name) { return form.elements["check." + name]; };
    field("type").value = c.type;
    for (const name of ["path", "interval", "timeout", "rise", "fall", "expect_status", "body"]) {
      field(name).value = c[name] === undefined || c[name] === null ? "" : c[name];
    }
    field("headers").value = Object.keys(c.headers || {}).map(function (k) { return k + ": " + c.headers[k]; }).join("\n");
    showHttpFields(form);
  }

  function showHttpFields(form) {
    const http = form.elements["check.type"].value === "http";
    for (const node of form.querySelectorAll("[data-http]")) node.hidden = !http;
  }

  function checkBody(form) {
    const field = function (name) { return form.elements["check." + name]; };
    const check = { type: field("type").value, interval: field("interval").value.trim(), timeout: field("timeout").value.trim(),
      rise: Mesh.number(field("rise")), fall: Mesh.number(field("fall")) };
    if (check.type === "http") {
      check.path = field("path").value.trim();
      check.expect_status = field("expect_status").value.trim();
      check.body = field("body").value;
      check.headers = {};
      field("headers").value.split("\n").forEach(function (line, n) {
        if (!line.trim()) return;
        const at = line.indexOf(":");
        if (at < 1) throw Mesh.fieldError("check.headers", "line " + (n + 1) + ': expected "Name: value"');
        check.headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      });
    }
    return check;
  }

  async function save(body) {
    const updated = await Mesh.api(serviceUrl(), { method: "PATCH", body: body });
    Mesh.serviceUpdate(updated);
  }

  async function deleteService() {
    const s = service();
    const deps = await dependents();
    const ok = await Mesh.confirm({
      title: "Delete " + s.name + "?",
      danger: true,
      confirmLabel: "Delete " + s.name,
      body: [
        el("p", null, "This deregisters ", el("strong", null, s.instances.length + " instance(s)"),
          " and removes the service's policy. Agents stop routing to it at the next revision."),
        el("ul", { class: "deps" }, dependentItems(deps)),
      ],
    });
    if (!ok) return;
    try {
      await Mesh.api(serviceUrl(), { method: "DELETE" });
      location.href = "/services/";
    } catch (e) {
      const error = document.getElementById("service-error");
      error.textContent = "Could not delete " + s.name + ": " + e.message;
      error.hidden = false;
    }
  }

  /* The instances a bulk body selects: the API's rule (registry.control.Selector),
     repeated here only to name them before the user confirms. */
  function selected(body) {
    return service().instances.filter(function (i) {
      if (body.all) return true;
      const tags = new Set(i.tags || []);
      const meta = i.metadata || {};
      return body.selector.tags.every(function (t) { return tags.has(t); }) &&
        Object.keys(body.selector.metadata).every(function (k) { return k in meta && String(meta[k]) === body.selector.metadata[k]; });
    });
  }

  function serving(i) { return OPERATOR.indexOf(i.status) < 0 && i.status !== "critical"; }

  /* One instance's drain/maintenance/disable: confirmed only when it is the
     last one receiving traffic (the service would go out of rotation). */

  /* Resolves true when the user confirms the bulk action BODY. */
  Mesh.confirmBulk = async function (body) {
    const s = service();
    const chosen = selected(body);
    const inRotation = s.instances.filter(serving);
    const left = inRotation.filter(function (i) { return chosen.indexOf(i) < 0; });
    const deps = await dependents();
    const prediction = await whatIf(instanceEdit(chosen, body.action, body.weight));
    const out = TAKES_OUT[body.action] && inRotation.length && !left.length;
    return Mesh.confirm({
      title: body.action + " " + chosen.length + " of " + s.instances.length + " instance(s)?",
      danger: Boolean(TAKES_OUT[body.action]),
      confirmLabel: body.action + " " + chosen.length + " instance(s)",
      body: [
        el("p", { dataset: { bulkCount: chosen.length } }, body.all ? "Every instance of " + s.name + " is selected." :
          "The selector matches " + chosen.length + " instance(s)" + (chosen.length ? ": " : "."),
        body.all ? null : chosen.map(function (i) { return el("code", { class: "dep" }, i.address + ":" + i.port); })),
        out ? el("p", { class: "alert", dataset: { outOfRotation: "" } },
          "This takes " + s.name + " out of rotation: no instance will receive new traffic.") : null,
        chosen.length ? whatIfPanel(prediction) : null,
        TAKES_OUT[body.action] ? el("ul", { class: "deps" }, dependentItems(deps)) : null,
      ],
    });
  };

  document.addEventListener("DOMContentLoaded", function () {
    Mesh.formDialog(document.getElementById("service-edit-dialog"), {
      openers: [document.getElementById("edit-service")],
      prepare: fillServiceForm,
      submit: function (form) { return save(Mesh.serviceBody(form)); },
    });
    const checkForm = Mesh.formDialog(document.getElementById("check-dialog"), {
      openers: [document.getElementById("edit-check")],
      prepare: fillCheckForm,
      submit: function (form) { return save({ check: checkBody(form) }); },
    });
    checkForm.elements["check.type"].addEventListener("change", function () { showHttpFields(checkForm); });
    document.getElementById("delete-service").addEventListener("click", deleteService);
  });
})();
