/* The traffic policy document (docs/policies.md) <-> the editor's form fields,
   named by the document's dotted paths. */
(function () {
  "use strict";
  const WRITABLE = ["load_balancer", "hash_on", "connect_timeout", "request_timeout", "idle_timeout", "retries",
    "outlier", "circuit_breaker", "rate_limit", "panic_threshold_percent", "locality", "zone_priority", "failover"];
  const NUMBERS = ["retries.attempts", "retries.budget_percent", "retries.min_per_second", "outlier.consecutive_5xx",
    "outlier.consecutive_gateway", "outlier.max_ejection_percent", "circuit_breaker.max_connections",
    "circuit_breaker.max_pending", "circuit_breaker.max_requests", "panic_threshold_percent"];
  const TEXTS = ["load_balancer", "connect_timeout", "request_timeout", "idle_timeout", "retries.per_try_timeout",
    "retries.backoff_base", "retries.backoff_max", "outlier.base_ejection", "failover.hold_down"];

  function get(doc, path) {
    return path.split(".").reduce(function (at, key) { return at === null || at === undefined ? at : at[key]; }, doc);
  }

  function set(doc, path, value) {
    const parts = path.split(".");
    let at = doc;
    parts.slice(0, -1).forEach(function (p) { at = at[p] = at[p] || {}; });
    at[parts[parts.length - 1]] = value;
  }

  /* The writable part of an API document (what PUT takes, what versions store). */
  function writable(doc) {
    const out = {};
    for (const key of WRITABLE) out[key] = JSON.parse(JSON.stringify(doc[key] === undefined ? null : doc[key]));
    return out;
  }

  function fill(form, doc) {
    const f = form.elements;
    for (const path of NUMBERS.concat(TEXTS)) f[path].value = get(doc, path) === undefined ? "" : get(doc, path);
    f["hash_on.type"].value = doc.hash_on ? doc.hash_on.type : "";
    f["hash_on.name"].value = doc.hash_on ? doc.hash_on.name || "" : "";
    const on = new Set(doc.retries.on || []);
    for (const box of form.querySelectorAll('input[name="retries.on"]')) box.checked = on.has(box.value);
    f["rate_limit.enabled"].checked = Boolean(doc.rate_limit);
    f["rate_limit.rps"].value = doc.rate_limit ? doc.rate_limit.rps : "";
    f["rate_limit.burst"].value = doc.rate_limit ? doc.rate_limit.burst : "";
    f["locality.enabled"].checked = Boolean(doc.locality.enabled);
    f.zone_priority.value = (doc.zone_priority || []).join(", ");
    f["failover.targets"].value = (doc.failover.targets || []).join(", ");
    sync(form);
  }

  /* The form as a writable document; numbers stay text when they are not
     numbers, so the API's error lands on the field. */
  function read(form) {
    const f = form.elements;
    const doc = {};
    for (const path of TEXTS) set(doc, path, f[path].value.trim());
    for (const path of NUMBERS) set(doc, path, Mesh.number(f[path]));
    const kind = f["hash_on.type"].value;
    doc.hash_on = kind ? { type: kind, name: kind === "client_ip" ? "" : f["hash_on.name"].value.trim() } : null;
    doc.retries.on = Array.from(form.querySelectorAll('input[name="retries.on"]:checked')).map(function (b) { return b.value; });
    doc.rate_limit = f["rate_limit.enabled"].checked ?
      { rps: Mesh.number(f["rate_limit.rps"]), burst: Mesh.number(f["rate_limit.burst"]) } : null;
    if (doc.rate_limit && doc.rate_limit.burst === "") delete doc.rate_limit.burst;
    doc.locality = { enabled: f["locality.enabled"].checked };
    doc.zone_priority = Mesh.splitList(f.zone_priority.value);
    doc.failover.targets = Mesh.splitList(f["failover.targets"].value);
    return writable(doc);
  }

  /* Fields that only mean something with others: shown enabled only then. */
  function sync(form) {
    const f = form.elements;
    const hashing = ["ring_hash", "maglev"].indexOf(f.load_balancer.value) >= 0;
    f["hash_on.type"].disabled = !hashing;
    if (!hashing) f["hash_on.type"].value = "";
    const named = hashing && ["header", "cookie"].indexOf(f["hash_on.type"].value) >= 0;
    f["hash_on.name"].disabled = !named;
    f["rate_limit.rps"].disabled = f["rate_limit.burst"].disabled = !f["rate_limit.enabled"].checked;
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }
  function group(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  /* MINE's changes relative to BASE, laid over THEIRS (a newer version), field
     by field inside groups: returns {doc, reapplied, clashes} (clashes: fields
     both sides changed; mine win, the user reviews the diff before saving). */
  function rebase(base, mine, theirs) {
    const doc = writable(theirs);
    const reapplied = [];
    const clashes = [];
    function take(path, b, m, t, put) {
      if (same(m, b)) return;
      if (!same(t, b)) clashes.push(path);
      put(JSON.parse(JSON.stringify(m === undefined ? null : m)));
      reapplied.push(path);
    }
    for (const key of WRITABLE) {
      if (group(base[key]) && group(mine[key]) && group(theirs[key])) {
        const subs = new Set(Object.keys(base[key]).concat(Object.keys(mine[key])));
        subs.forEach(function (sub) {
          take(key + "." + sub, base[key][sub], mine[key][sub], theirs[key][sub], function (v) { doc[key][sub] = v; });
        });
      } else {
        take(key, base[key], mine[key], theirs[key], function (v) { doc[key] = v; });
      }
    }
    return { doc: doc, reapplied: reapplied, clashes: clashes };
  }

  Mesh.policyForm = { fill: fill, read: read, sync: sync, writable: writable, rebase: rebase };
})();
