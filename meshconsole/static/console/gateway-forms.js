/* A gateway route document (docs/gateway.md) <-> the route dialog's fields,
   named by the document's dotted paths so the API's 400 lands at the field. */
(function () {
  "use strict";
  const list = Mesh.splitList;

  /* "100/second burst 20 global consumer" <-> {requests, per, burst, mode, scope}. */
  function limitText(r) {
    return r.requests + "/" + r.per + (r.burst ? " burst " + r.burst : "") + " " + r.mode + " " + r.scope;
  }

  function parseLimits(text) {
    const out = [];
    text.split("\n").forEach(function (line, n) {
      const words = line.trim().split(/\s+/).filter(Boolean);
      if (!words.length) return;
      const rate = /^(\d+)\/(second|minute)$/.exec(words[0]);
      if (!rate) throw Mesh.fieldError("rate_limits", "line " + (n + 1) + ': expected "N/second" or "N/minute" first');
      const limit = { requests: Number(rate[1]), per: rate[2], burst: 0, mode: "local", scope: "route" };
      for (let i = 1; i < words.length; i++) {
        const word = words[i];
        if (word === "burst" && /^\d+$/.test(words[i + 1] || "")) { limit.burst = Number(words[++i]); }
        else if (word === "local" || word === "global") limit.mode = word;
        else if (word === "route" || word === "consumer") limit.scope = word;
        else throw Mesh.fieldError("rate_limits", "line " + (n + 1) + ": " + JSON.stringify(word) + " is not burst N, local, global, route or consumer");
      }
      out.push(limit);
    });
    return out;
  }

  /* An optional number field: null when empty, the raw text when not a number. */
  function optional(field) {
    return field.value.trim() === "" ? null : Mesh.number(field);
  }

  function fill(form, route) {
    const f = form.elements;
    const r = route || { hosts: [], path: { prefix: "/" }, methods: [], auth: { type: "none", consumers: [] }, rate_limits: [] };
    f.name.value = r.name || "";
    f.hosts.value = (r.hosts || []).join(", ");
    const kind = Object.keys(r.path || { prefix: "/" })[0];
    f["path.kind"].value = kind;
    f["path.value"].value = r.path ? r.path[kind] : "/";
    f.methods.value = (r.methods || []).join(", ");
    f.service.value = r.service || "";
    f.subset.value = r.subset || "";
    f.strip_prefix.checked = Boolean(r.strip_prefix);
    const auth = r.auth || { type: "none" };
    f["auth.type"].value = auth.type;
    f["auth.key.header"].value = auth.key ? auth.key.header : "";
    f["auth.key.query"].value = auth.key ? auth.key.query : "";
    f["auth.jwt.provider"].value = auth.jwt ? auth.jwt.provider : "";
    f["auth.consumers"].value = (auth.consumers || []).join(", ");
    f.rate_limits.value = (r.rate_limits || []).map(limitText).join("\n");
    const cors = r.cors || null;
    f["cors.origins"].value = cors ? cors.origins.join(", ") : "";
    f["cors.methods"].value = cors ? cors.methods.join(", ") : "";
    f["cors.headers"].value = cors ? cors.headers.join(", ") : "";
    f["cors.credentials"].checked = Boolean(cors && cors.credentials);
    f["cors.max_age_s"].value = cors ? cors.max_age_s : "";
    f.max_body_bytes.value = r.max_body_bytes === undefined || r.max_body_bytes === null ? "" : r.max_body_bytes;
    f.timeout_ms.value = r.timeout_ms === undefined || r.timeout_ms === null ? "" : r.timeout_ms;
    sync(form);
  }

  /* The form as a route document (what POST/PUT take); throws a 400-shaped
     error for what only the form can tell (a rate limit line). */
  function read(form) {
    const f = form.elements;
    const route = {
      name: f.name.value.trim(),
      hosts: list(f.hosts.value),
      path: {},
      methods: list(f.methods.value),
      service: f.service.value.trim(),
      subset: f.subset.value.trim(),
      strip_prefix: f.strip_prefix.checked,
      rate_limits: parseLimits(f.rate_limits.value),
      cors: null,
      max_body_bytes: optional(f.max_body_bytes),
      timeout_ms: optional(f.timeout_ms),
    };
    route.path[f["path.kind"].value] = f["path.value"].value.trim();
    const type = f["auth.type"].value;
    route.auth = { type: type, consumers: type === "none" ? [] : list(f["auth.consumers"].value) };
    if (type === "key") {
      route.auth.key = { header: f["auth.key.header"].value.trim() || "apikey", query: f["auth.key.query"].value.trim() };
    } else if (type === "jwt") {
      route.auth.jwt = { provider: f["auth.jwt.provider"].value };
    }
    const origins = list(f["cors.origins"].value);
    if (origins.length) {
      route.cors = {
        origins: origins,
        methods: list(f["cors.methods"].value),
        headers: list(f["cors.headers"].value),
        credentials: f["cors.credentials"].checked,
      };
      const age = optional(f["cors.max_age_s"]);
      if (age !== null) route.cors.max_age_s = age;
    }
    return route;
  }

  /* Show only the fields the chosen auth type and CORS use. */
  function sync(form) {
    const type = form.elements["auth.type"].value;
    for (const node of form.querySelectorAll("[data-auth]")) {
      node.hidden = node.dataset.auth.split(" ").indexOf(type) < 0;
    }
    const cors = form.elements["cors.origins"].value.trim() !== "";
    for (const node of form.querySelectorAll("[data-cors]")) node.hidden = !cors;
  }

  Mesh.gatewayForm = { fill: fill, read: read, sync: sync, limitText: limitText };
})();
