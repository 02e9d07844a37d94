/* The routes and subsets document (docs/policies.md "Routes and subsets") as a
   form: subsets with the instances each selects, routes in order with every
   field the document has. The form edits the document object in place, one
   field per control and only when that control is used: what no control shows
   (a field the form does not know, a value it has no widget for) is never
   rewritten, so the form and the JSON view round-trip. Controls are named by
   the document's dotted paths (routes.0.split.1.weight), so the API's 400
   lands at the field (routes-editor.js places it). */
(function () {
  "use strict";
  const el = Mesh.el;
  let V = null; // the page's routes-vocabulary: kinds and bounds (meshconsole/console/routes.py)
  let doc = null; // the document being edited (the editor's)
  let hooks = null; // {changed(), instances()}

  function byId(id) { return document.getElementById(id); }
  function isObj(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
  function str(v) { return v === undefined || v === null ? "" : String(v); }
  function listText(v) { return Array.isArray(v) ? v.join(", ") : str(v); }
  function changed() { hooks.changed(); }

  /* The first path where DOC has a shape the form cannot draw (a route that is
     not an object...), or "": such a document stays in the JSON view. */
  const CONDITIONS = { list: "obj" };
  const EDITS = { obj: { set: "obj", remove: "list" } };
  const SHAPE = { obj: {
    subsets: { map: { obj: { tags: "list", metadata: "obj" } } },
    routes: { list: { obj: {
      match: { obj: { path: "obj", methods: "list", headers: CONDITIONS, query: CONDITIONS } },
      split: { list: "obj" }, sticky: "obj", rewrite: "obj", retries: "obj",
      request_headers: EDITS, response_headers: EDITS,
    } } },
  } };

  function unformable(value) {
    function check(v, shape, path) {
      if (v === undefined) return "";
      const kind = typeof shape === "string" ? shape : Object.keys(shape)[0];
      const inner = typeof shape === "string" ? null : shape[kind];
      if (kind === "list") {
        if (!Array.isArray(v)) return path + ": expected a list";
        for (let i = 0; inner && i < v.length; i++) {
          const bad = check(v[i], inner, path + "." + i);
          if (bad) return bad;
        }
        return "";
      }
      if (!isObj(v)) return (path || "the document") + ": expected an object";
      for (const key of inner ? Object.keys(kind === "map" ? v : inner) : []) {
        const bad = check(v[key], kind === "map" ? inner : inner[key], path ? path + "." + key : key);
        if (bad) return bad;
      }
      return "";
    }
    return check(value, SHAPE, "");
  }

  function button(text, onclick, attrs) {
    return el("button", Object.assign({ type: "button", class: "link-button", onclick: onclick }, attrs || {}), text);
  }

  function field(label, control, extra) {
    return el("div", { class: "field rf-field" }, el("label", null, el("span", { class: "rf-label" }, label), control), extra);
  }

  function text(path, value, onValue, attrs) {
    const input = el("input", Object.assign({ type: "text", name: path, value: str(value) }, attrs || {}));
    input.addEventListener("input", function () { onValue(input); changed(); });
    return input;
  }

  /* A number field: absent when empty and OPTIONAL, else a number, or the raw
     text for the API to name the error. */
  function number(path, value, bounds, onValue, attrs) {
    return text(path, value, onValue, Object.assign({ type: "number", min: bounds[0], max: bounds[1], class: "rf-number" }, attrs || {}));
  }

  /* Set or delete PARENT[KEY] (VALUE undefined: delete). */
  function put(parent, key, value) { if (value === undefined) delete parent[key]; else parent[key] = value; }

  /* "Exactly one of KINDS" in OBJ (a path match, sticky, rewrite, a condition):
     a kind select (claiming PATH's errors) and its value, named PATH.KIND.
     OBJ() returns the object to write, made on first use; FLAGS are kinds whose
     value is `true`; NONE (a label) offers no kind at all, which calls
     onNone(). */
  function choice(path, kinds, current, opts) {
    const given = isObj(current) ? kinds.filter(function (k) { return k in current; }) : [];
    let kind = given[0] || (opts.none ? "" : kinds[0]);
    const flags = opts.flags || [];
    const select = el("select", { dataset: { errorsFor: path }, "aria-label": opts.label },
      opts.none ? el("option", { value: "" }, opts.none) : null,
      kinds.map(function (k) { return el("option", { value: k, selected: k === kind }, opts.labels ? opts.labels[k] || k : k); }));
    const value = el("input", { type: "text", value: kind && isObj(current) ? str(current[kind]) : "",
      "aria-label": opts.label + " value", placeholder: opts.placeholder || "" });
    function sync() {
      value.hidden = !kind || flags.indexOf(kind) >= 0;
      value.name = path + "." + (kind || "value");
      if (opts.placeholders) value.placeholder = opts.placeholders[kind] || "";
    }
    function write() {
      if (!kind) { opts.onNone(); changed(); return; }
      const target = opts.obj();
      for (const k of kinds) delete target[k];
      target[kind] = flags.indexOf(kind) >= 0 ? true : value.value;
      changed();
    }
    select.addEventListener("change", function () { kind = select.value; sync(); write(); });
    value.addEventListener("input", write);
    sync();
    return el("span", { class: "rf-choice" }, select, value);
  }

  /* Rows over a list (ITEMS() the list or undefined; SET(list) stores it):
     ROW(item, j, path) draws one, MAKE() a new one; no "add" past MAX. */
  function rows(path, opts) {
    const box = el("div", { class: "field rf-rows", dataset: { errorsFor: path } });
    function draw() {
      const items = opts.items() || [];
      box.replaceChildren.apply(box, items.map(function (item, j) {
        return el("div", { class: "field rf-row" }, opts.row(item, j, path + "." + j),
          button("remove", function () { items.splice(j, 1); opts.set(items); draw(); changed(); },
            { "aria-label": "remove " + opts.what + " " + (j + 1) }));
      }).concat(opts.max && items.length >= opts.max ? [] : [button("+ " + opts.what, function () {
        const items = opts.items() || [];
        items.push(opts.make());
        opts.set(items);
        draw();
        changed();
        const last = box.querySelectorAll(".rf-row");
        const first = last.length && last[last.length - 1].querySelector("input, select");
        if (first) first.focus();
      }, { class: "link-button rf-add" })]));
      if (opts.drawn) opts.drawn();
    }
    opts.redraw = draw; // for a row that changes its own shape (a split target's kind)
    draw();
    return box;
  }

  /* An object of string -> string (a subset's metadata, headers to set) as
     key = value rows, rebuilt in row order on every edit. */
  function pairs(path, current, what, onObject) {
    const list = Object.keys(isObj(current) ? current : {}).map(function (k) { return [k, current[k]]; });
    function write() {
      const out = {};
      for (const pair of list) if (pair[0] !== "") out[pair[0]] = pair[1];
      onObject(out);
    }
    return rows(path, {
      what: what, items: function () { return list; }, set: write, make: function () { return ["", ""]; },
      row: function (pair) {
        const value = text(path + "." + pair[0], pair[1], function (f) { pair[1] = f.value; write(); },
          { "aria-label": what + " value", placeholder: "value" });
        const key = text("", pair[0], function (f) {
          pair[0] = f.value.trim();
          value.name = path + "." + pair[0];
          write();
        }, { "aria-label": what + " name", placeholder: "name", size: 14 });
        key.removeAttribute("name");
        return el("span", { class: "rf-pair" }, key, " = ", value);
      },
    });
  }

  // -- subsets -----------------------------------------------------------------

  function selects(spec, instance) {
    const tags = Array.isArray(spec.tags) ? spec.tags : [];
    const metadata = isObj(spec.metadata) ? spec.metadata : {};
    const has = instance.tags || [];
    const its = instance.metadata || {};
    return tags.every(function (t) { return has.indexOf(t) >= 0; }) &&
      Object.keys(metadata).every(function (k) { return its[k] === metadata[k]; });
  }

  function countSubsets() {
    const all = hooks.instances();
    for (const out of document.querySelectorAll("#routes-subsets .subset-count")) {
      const spec = doc.subsets[out.dataset.subset];
      if (!spec) continue;
      const chosen = all.filter(function (i) { return selects(spec, i); });
      out.dataset.count = chosen.length;
      out.textContent = "selects " + chosen.length + " of " + all.length + " instance" + (all.length === 1 ? "" : "s");
      out.title = chosen.map(function (i) { return i.address + ":" + i.port; }).join(", ");
    }
  }

  function renameSubset(old, input) {
    const name = input.value.trim();
    if (name === old) return;
    if (!name || Object.prototype.hasOwnProperty.call(doc.subsets, name)) {
      input.value = old;
      const problem = {};
      problem["subsets." + old] = [name ? "another subset is named " + name : "a subset needs a name"];
      Mesh.showErrors(input.form, problem);
      return;
    }
    const renamed = {};
    for (const key of Object.keys(doc.subsets)) renamed[key === old ? name : key] = doc.subsets[key];
    doc.subsets = renamed;
    // The splits follow the rename (the review lists them).
    for (const route of doc.routes || []) {
      for (const t of (route && route.split) || []) if (isObj(t) && t.subset === old) t.subset = name;
    }
    render(doc);
    changed();
    byId("routes-subsets").querySelector('[name="' + CSS.escape("subsets." + name) + '"]').focus();
  }

  function subsetBox(name) {
    const spec = doc.subsets[name];
    const path = "subsets." + name;
    const nameInput = el("input", { type: "text", name: path, value: name, size: 14, class: "subset-name" });
    nameInput.addEventListener("change", function () { renameSubset(name, nameInput); });
    return el("fieldset", { class: "subset-edit", dataset: { subset: name } },
      el("legend", null, "subset ", el("b", null, name), " ",
        button("remove", function () { delete doc.subsets[name]; render(doc); changed(); }, { "aria-label": "remove subset " + name })),
      field("Name", nameInput),
      field("Tags (every one)", text(path + ".tags", listText(spec.tags), function (f) {
        spec.tags = Mesh.splitList(f.value);
        countSubsets();
      }, { placeholder: "v2, canary", class: "subset-tags" })),
      el("div", { class: "rf-field" }, el("span", { class: "rf-label" }, "Metadata (every pair)"),
        pairs(path + ".metadata", spec.metadata, "metadata", function (out) { spec.metadata = out; countSubsets(); })),
      el("output", { class: "subset-count muted small", dataset: { subset: name } }));
  }

  function addSubset() {
    if (!isObj(doc.subsets)) doc.subsets = {};
    let n = Object.keys(doc.subsets).length + 1;
    while (doc.subsets["subset-" + n]) n++;
    doc.subsets["subset-" + n] = { tags: [], metadata: {} };
    render(doc);
    changed();
    const names = byId("routes-subsets").querySelectorAll(".subset-name");
    names[names.length - 1].select();
  }

  function render(value) {
    doc = value;
    const names = Object.keys(doc.subsets || {});
    const box = byId("routes-subsets");
    box.replaceChildren.apply(box, names.length ? names.map(subsetBox) :
      [el("p", { class: "muted small" }, "No subset: a split can still send to other services.")]);
    countSubsets();
    Mesh.routeBoxes.render();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const vocabulary = byId("routes-vocabulary");
    if (!vocabulary) return;
    V = JSON.parse(vocabulary.textContent);
    byId("routes-add-subset").addEventListener("click", addSubset);
    byId("routes-add-route").addEventListener("click", function () { Mesh.routeBoxes.add(); });
    document.addEventListener("mesh:service", function () { if (doc) countSubsets(); });
  });

  Mesh.routesForm = {
    /* HOOKS: changed() after every edit, instances() the service's instances. */
    start: function (h) { hooks = h; },
    render: render,
    unformable: unformable,
    // for the routes' fieldsets (routes-form-routes.js)
    parts: {
      vocabulary: function () { return V; }, document: function () { return doc; }, changed: changed,
      isObj: isObj, str: str, listText: listText, button: button, field: field, text: text, number: number,
      put: put, choice: choice, rows: rows, pairs: pairs,
    },
  };
})();
