/* The routes part of the routes form (routes-form.js holds the document, its
   widgets and the subsets): one fieldset per route, in evaluation order, with
   move up/down, add and remove; each field of a route (docs/policies.md
   "Routes and subsets") as a control named by its path, written into the
   document only when used. */
(function () {
  "use strict";
  const el = Mesh.el;
  const P = Mesh.routesForm.parts;

  function byId(id) { return document.getElementById(id); }
  function routes() { const d = P.document(); return Array.isArray(d.routes) ? d.routes : []; }
  function subsetNames() { return Object.keys(P.document().subsets || {}); }

  function render() {
    const box = byId("routes-routes");
    const list = routes();
    box.replaceChildren.apply(box, list.length ? list.map(routeBox) :
      [el("p", { class: "muted small" }, "No route: every request goes to the whole service.")]);
  }

  function focusIn(i, selector) {
    const node = byId("routes-routes").querySelector('fieldset[data-route-index="' + i + '"] ' + selector);
    if (node) node.focus();
  }

  function move(i, by) {
    const list = routes();
    const moved = list[i];
    list[i] = list[i + by];
    list[i + by] = moved;
    render();
    P.changed();
    const j = i + by;
    const end = by < 0 ? j === 0 : j === list.length - 1;
    focusIn(j, end ? ".route-name" : '[data-move="' + (by < 0 ? "up" : "down") + '"]');
  }

  function add() {
    const d = P.document();
    if (!Array.isArray(d.routes)) d.routes = [];
    const taken = d.routes.map(function (r) { return r && r.name; });
    let n = d.routes.length + 1;
    while (taken.indexOf("route-" + n) >= 0) n++;
    d.routes.push({ name: "route-" + n, match: { path: { prefix: "/" } },
      split: [{ subset: subsetNames()[0] || "", weight: 100 }], fallback: "next" });
    render();
    P.changed();
    focusIn(d.routes.length - 1, ".route-name");
    byId("routes-routes").querySelector('fieldset[data-route-index="' + (d.routes.length - 1) + '"] .route-name').select();
  }

  function routeBox(route, i, list) {
    const path = "routes." + i;
    const title = el("b", null, P.str(route.name) || "(no name)");
    const name = P.text(path + ".name", route.name, function (f) {
      route.name = f.value;
      title.textContent = f.value || "(no name)";
    }, { class: "route-name", size: 24, placeholder: "a-z, 0-9, -" });
    return el("fieldset", { class: "field route-edit", dataset: { routeIndex: i, errorsFor: path } },
      el("legend", null, "#" + (i + 1) + " ", title, " ",
        P.button("↑", function () { move(i, -1); }, { disabled: i === 0, dataset: { move: "up" }, "aria-label": "move route " + (i + 1) + " up" }),
        P.button("↓", function () { move(i, 1); }, { disabled: i === list.length - 1, dataset: { move: "down" }, "aria-label": "move route " + (i + 1) + " down" }),
        P.button("remove", function () { list.splice(i, 1); render(); P.changed(); }, { "aria-label": "remove route " + (i + 1) })),
      P.field("Name", name),
      matchPart(route, path), splitPart(route, path), optionsPart(route, path), headersPart(route, path));
  }

  // -- match -------------------------------------------------------------------

  function matchPart(route, path) {
    const V = P.vocabulary();
    const m = P.isObj(route.match) ? route.match : {};
    function match() { if (!P.isObj(route.match)) route.match = {}; return route.match; }
    return el("div", { class: "rf-part", dataset: { errorsFor: path + ".match" } }, el("h4", null, "Match"),
      P.field("Path", P.choice(path + ".match.path", V.path_kinds, m.path, {
        label: "path match", none: "any path",
        placeholders: { exact: "/health", prefix: "/api", regex: "/v[0-9]+/.*" },
        obj: function () { const mm = match(); if (!P.isObj(mm.path)) mm.path = {}; return mm.path; },
        onNone: function () { delete match().path; },
      })),
      P.field("Methods", P.text(path + ".match.methods", P.listText(m.methods), function (f) {
        const methods = Mesh.splitList(f.value);
        P.put(match(), "methods", methods.length ? methods : undefined);
      }, { placeholder: "any (GET, POST)" })),
      conditions(route, match, path + ".match.headers", "headers", "header", V.header_kinds, ["present", "absent"]),
      conditions(route, match, path + ".match.query", "query", "query parameter", V.query_kinds, ["present"]));
  }

  function conditions(route, match, path, key, what, kinds, flags) {
    return el("div", { class: "rf-field" }, el("span", { class: "rf-label" }, what === "header" ? "Headers" : "Query"),
      P.rows(path, {
        what: what,
        items: function () { return P.isObj(route.match) ? route.match[key] : undefined; },
        set: function (list) { P.put(match(), key, list.length ? list : undefined); },
        make: function () { const c = { name: "" }; c[kinds[0]] = ""; return c; },
        row: function (c, j, where) {
          return el("span", { class: "rf-cond" },
            P.text(where + ".name", c.name, function (f) { c.name = f.value; },
              { "aria-label": what + " " + (j + 1) + " name", placeholder: "name", size: 14 }),
            P.choice(where, kinds, c, { label: what + " " + (j + 1) + " condition", flags: flags,
              placeholders: { exact: "value", prefix: "value", regex: "regex" }, obj: function () { return c; } }));
        },
      }));
  }

  // -- split -------------------------------------------------------------------

  function subsetSelect(path, current, onValue, label) {
    const names = subsetNames();
    const options = names.map(function (n) { return el("option", { value: n, selected: n === current }, n); });
    if (current === undefined || current === "") options.unshift(el("option", { value: "", selected: true }, "choose a subset"));
    else if (names.indexOf(current) < 0) options.unshift(el("option", { value: P.str(current), selected: true }, current + " (not a subset)"));
    const select = el("select", { name: path, "aria-label": label }, options);
    select.addEventListener("change", function () { onValue(select.value); P.changed(); });
    return select;
  }

  function splitPart(route, path) {
    const V = P.vocabulary();
    const total = el("span", { class: "split-total muted small" });
    let box = null;
    function targets() { return Array.isArray(route.split) ? route.split : undefined; }
    function shares() {
      if (!box) return;
      const list = targets() || [];
      const sum = list.reduce(function (s, t) { return s + (Number(t && t.weight) || 0); }, 0);
      total.textContent = "total " + sum + (sum ? "" : " (the weights must not all be 0)");
      const spans = box.querySelectorAll(".split-row .percent");
      list.forEach(function (t, j) {
        if (spans[j]) spans[j].textContent = sum > 0 ? Math.round(1000 * (Number(t && t.weight) || 0) / sum) / 10 + " %" : "";
      });
    }
    const opts = {
      what: "target",
      max: V.split_max,
      items: targets,
      set: function (list) { route.split = list; },
      make: function () { return { subset: subsetNames()[0] || "", weight: 0 }; },
      drawn: shares,
      row: function (t, j, where) {
        const service = "service" in t && !("subset" in t);
        const kind = el("select", { dataset: { errorsFor: where }, "aria-label": "target " + (j + 1) + " kind" },
          el("option", { value: "subset", selected: !service }, "subset"),
          el("option", { value: "service", selected: service }, "service"));
        kind.addEventListener("change", function () {
          delete t.subset;
          delete t.service;
          if (kind.value === "subset") t.subset = subsetNames()[0] || ""; else t.service = "";
          opts.redraw();
          P.changed();
        });
        const target = service ?
          P.text(where + ".service", t.service, function (f) { t.service = f.value.trim(); },
            { list: "routes-service-names", placeholder: "another service", "aria-label": "target " + (j + 1) + " service" }) :
          subsetSelect(where + ".subset", t.subset, function (v) { t.subset = v; }, "target " + (j + 1) + " subset");
        const weight = P.number(where + ".weight", t.weight, [0, V.weight_max], function (f) {
          t.weight = Mesh.number(f);
          shares();
        }, { class: "rf-number split-weight", "aria-label": "target " + (j + 1) + " weight" });
        return el("span", { class: "split-row" }, kind, target, weight, el("span", { class: "muted small percent" }));
      },
    };
    const list = P.rows(path + ".split", opts);
    box = el("div", { class: "rf-part" }, el("h4", null, "Split ", total), list, canary(route, opts, shares));
    shares();
    return box;
  }

  /* The split as STABLE/CANARY in one click (95/5 by default): exactly those
     two targets, each keeping what else it had. */
  function canary(route, opts, shares) {
    const names = subsetNames();
    if (names.length < 2) return el("p", { class: "muted small canary" }, "Canary: define two subsets to split between them.");
    const split = (Array.isArray(route.split) ? route.split : []).filter(function (t) {
      return P.isObj(t) && names.indexOf(t.subset) >= 0;
    }).map(function (t) { return t.subset; });
    function choose(cls, chosen) {
      return el("select", { class: cls }, names.map(function (n) { return el("option", { value: n, selected: n === chosen }, n); }));
    }
    const stable = choose("canary-stable", split[0] || names[0]);
    const next = choose("canary-subset", split[1] && split[1] !== stable.value ? split[1] :
      names.filter(function (n) { return n !== stable.value; })[0]);
    const percent = el("input", { type: "number", class: "rf-number canary-percent", min: 1, max: 99, value: 5 });
    const problem = el("span", { class: "muted small canary-problem", role: "status" });
    const apply = P.button("", function () {
      const p = Number(percent.value);
      if (!Number.isInteger(p) || p < 1 || p > 99) { problem.textContent = "the canary's share is 1..99 %"; return; }
      if (stable.value === next.value) { problem.textContent = "pick two different subsets"; return; }
      problem.textContent = "";
      function keep(s) {
        return (route.split || []).filter(function (t) { return P.isObj(t) && t.subset === s; })[0] || { subset: s };
      }
      route.split = [Object.assign(keep(stable.value), { weight: 100 - p }), Object.assign(keep(next.value), { weight: p })];
      opts.redraw();
      shares();
      P.changed();
    }, { class: "button small canary-apply" });
    function label() {
      const p = Number(percent.value);
      apply.textContent = Number.isInteger(p) && p >= 1 && p <= 99 ? "Split " + (100 - p) + "/" + p : "Split";
    }
    percent.addEventListener("input", label);
    label();
    return el("div", { class: "canary" }, el("span", { class: "rf-label" }, "Canary"),
      el("label", null, "stable ", stable), el("label", null, "canary ", next),
      el("label", null, "share % ", percent), apply, problem);
  }

  // -- options and headers -----------------------------------------------------

  function optionsPart(route, path) {
    const V = P.vocabulary();
    const fallbacks = V.fallbacks.slice();
    const fallback = route.fallback === undefined || route.fallback === null ? "next" : P.str(route.fallback);
    if (fallbacks.indexOf(fallback) < 0) fallbacks.push(fallback);
    const says = { next: "next: the next target with a healthy endpoint", fail: "fail: 503 no-healthy-subset" };
    const fallbackSelect = el("select", { name: path + ".fallback" },
      fallbacks.map(function (f) { return el("option", { value: f, selected: f === fallback }, says[f] || f); }));
    fallbackSelect.addEventListener("change", function () { route.fallback = fallbackSelect.value; P.changed(); });
    function group(key) { return function () { if (!P.isObj(route[key])) route[key] = {}; return route[key]; }; }
    const retries = P.isObj(route.retries) ? route.retries : {};
    return el("div", { class: "rf-part rf-options" }, el("h4", null, "Options"),
      P.field("Sticky", P.choice(path + ".sticky", V.sticky_types, route.sticky, {
        label: "sticky", none: "no: a weighted pick per request",
        labels: { header: "by header", cookie: "by cookie" }, placeholders: { header: "x-user", cookie: "session" },
        obj: group("sticky"), onNone: function () { delete route.sticky; },
      })),
      P.field("Fallback", fallbackSelect),
      P.field("Rewrite", P.choice(path + ".rewrite", V.rewrite_kinds, route.rewrite, {
        label: "rewrite", none: "no", labels: { prefix: "the matched prefix to (/ strips it)", path: "the whole path to" },
        placeholders: { prefix: "/", path: "/v2/orders" },
        obj: group("rewrite"), onNone: function () { delete route.rewrite; },
      })),
      P.field("Timeout (ms)", P.number(path + ".timeout_ms", route.timeout_ms, V.timeout_ms, function (f) {
        P.put(route, "timeout_ms", f.value.trim() === "" ? undefined : Mesh.number(f));
      }, { placeholder: "the policy's" })),
      P.field("Retry attempts", P.number(path + ".retries.attempts", retries.attempts, V.attempts, function (f) {
        if (f.value.trim() !== "") { group("retries")().attempts = Mesh.number(f); return; }
        if (!P.isObj(route.retries)) return;
        delete route.retries.attempts;
        if (!Object.keys(route.retries).length) delete route.retries;
      }, { placeholder: "the policy's", dataset: { errorsFor: path + ".retries" } })));
  }

  function headersPart(route, path) {
    return el("div", { class: "rf-part" }, el("h4", null, "Headers"),
      edits(route, path, "request_headers", "Request"), edits(route, path, "response_headers", "Response"));
  }

  /* {set: {h: v}, remove: [h]}; gone from the route when both are empty. */
  function edits(route, path, part, label) {
    const where = path + "." + part;
    const current = P.isObj(route[part]) ? route[part] : {};
    function obj() { if (!P.isObj(route[part])) route[part] = {}; return route[part]; }
    function tidy() {
      const o = route[part];
      const empty = Object.keys(o).every(function (k) {
        return (k === "set" && P.isObj(o.set) && !Object.keys(o.set).length) || (k === "remove" && Array.isArray(o.remove) && !o.remove.length);
      });
      if (empty) delete route[part];
    }
    return el("div", { class: "rf-edits", dataset: { errorsFor: where } },
      el("div", { class: "rf-field" }, el("span", { class: "rf-label" }, label + " headers: set"),
        P.pairs(where + ".set", current.set, label.toLowerCase() + " header", function (out) { obj().set = out; tidy(); })),
      P.field(label + " headers: remove", P.text(where + ".remove", P.listText(current.remove), function (f) {
        obj().remove = Mesh.splitList(f.value);
        tidy();
      }, { placeholder: "x-internal, server" })));
  }

  Mesh.routeBoxes = { render: render, add: add };
})();
