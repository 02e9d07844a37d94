/* Dialogs and forms shared by the console's editors: a confirmation dialog,
   form dialogs (Escape closes, Enter submits), the API's 400 field errors shown
   at the field, the diff of two documents and the version history of one. */
(function () {
  "use strict";
  const el = Mesh.el;
  let dialogs = 0;

  /* A modal confirmation. BODY: nodes. Resolves true only on the confirm button;
     Escape or Cancel resolve false. Destructive ones start on Cancel. */
  function confirmDialog(opts) {
    const id = "confirm-title-" + (++dialogs);
    const cancel = el("button", { type: "submit", value: "cancel", class: "button" }, "Cancel");
    const ok = el("button", {
      type: "submit", value: "confirm", class: "button " + (opts.danger ? "danger" : "primary"),
      dataset: { confirm: "" },
    }, opts.confirmLabel || "Confirm");
    const dialog = el("dialog", { class: "dialog confirm-dialog", "aria-labelledby": id },
      el("form", { method: "dialog" },
        el("h2", { id: id }, opts.title),
        el("div", { class: "dialog-body" }, opts.body || []),
        el("div", { class: "dialog-actions" }, cancel, ok)));
    document.body.append(dialog);
    dialog.showModal();
    (opts.danger ? cancel : ok).focus();
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        resolve(dialog.returnValue === "confirm");
        dialog.remove();
      });
    });
  }

  /* Wire a <dialog> holding a form: OPENER buttons open it (after PREPARE(form)),
     SUBMIT(form) returns a promise; on success the dialog closes, on an API
     error the field errors are shown and it stays open. */
  function formDialog(dialog, opts) {
    const form = dialog.querySelector("form");
    for (const opener of opts.openers || []) {
      opener.addEventListener("click", function () {
        clearErrors(form);
        if (opts.prepare) opts.prepare(form);
        dialog.showModal();
        const first = form.querySelector("input:not([type=hidden]):not([disabled]), select, textarea");
        if (first) first.focus();
      });
    }
    for (const button of form.querySelectorAll("[data-close]")) {
      button.addEventListener("click", function () { dialog.close(); });
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearErrors(form);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await opts.submit(form);
        dialog.close();
      } catch (e) {
        showErrors(form, e.status === 400 ? e.data : { detail: e.message });
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function clearErrors(form) {
    for (const node of form.querySelectorAll(".field-error")) node.remove();
    for (const node of form.querySelectorAll("[aria-invalid]")) {
      node.removeAttribute("aria-invalid");
      node.removeAttribute("aria-describedby");
    }
    const alert = form.querySelector(".form-error");
    if (alert) { alert.hidden = true; alert.textContent = ""; }
  }

  /* The selector of the field named KEY or claiming its errors (a key may hold
     any character: a subset name is the user's until the API refuses it). */
  function claiming(key) {
    const k = CSS.escape(key);
    return '[name="' + k + '"], [data-errors-for~="' + k + '"]';
  }

  function fieldFor(form, path) {
    // The field named PATH, or one that claims its errors; else try the parent
    // path ("retries.on.0" -> "retries.on").
    let parts = path.split(".");
    while (parts.length) {
      const key = parts.join(".");
      const field = form.querySelector(claiming(key));
      if (field) return field;
      parts = parts.slice(0, -1);
    }
    return null;
  }

  /* DRF's 400 body ({field: [msg]}, nested for groups) onto the form's fields,
     named by dotted path ("check.timeout", "retries.backoff_base"). */
  function showErrors(form, data) {
    const rest = [];
    let first = null;
    function place(path, messages) {
      const field = path && path !== "non_field_errors" && path !== "detail" ? fieldFor(form, path) : null;
      if (!field) { rest.push((path && path !== "detail" && path !== "non_field_errors" ? path + ": " : "") + messages.join(" ")); return; }
      const id = "error-" + path.replace(/[^a-z0-9]+/gi, "-") + "-" + (++dialogs);
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", id);
      const message = el("span", { class: "field-error", id: id, dataset: { errorFor: path } }, messages.join(" "));
      const holder = field.closest(".field"); // inside the field's grid cell, under it
      if (holder) holder.append(message); else field.after(message);
      if (!first) first = field;
    }
    function walk(value, path) {
      if (value === null || value === undefined) return;
      if (typeof value !== "object") { place(path, [String(value)]); return; }
      if (Array.isArray(value) && value.every(function (v) { return typeof v !== "object"; })) {
        place(path, value.map(String));
        return;
      }
      for (const key of Object.keys(value)) walk(value[key], path ? path + "." + key : key);
    }
    walk(data || { detail: "the request failed" }, "");
    const alert = form.querySelector(".form-error");
    if (rest.length && alert) { alert.textContent = rest.join("; "); alert.hidden = false; }
    if (first) first.focus();
  }

  function splitList(text) {
    return String(text || "").split(",").map(function (t) { return t.trim(); }).filter(Boolean);
  }

  /* A number field's value: a number, or the raw text (so the API names the error). */
  function number(field) {
    const text = field.value.trim();
    const value = Number(text);
    return text !== "" && isFinite(value) ? value : text;
  }

  function isGroup(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  /* A value as the diff shows it: null is "off" (a group turned off), lists comma-separated. */
  function text(v) {
    if (v === undefined) return "—";
    if (v === null) return "off";
    if (Array.isArray(v)) return v.length ? v.join(", ") : "—";
    if (isGroup(v)) {
      const keys = Object.keys(v);
      return keys.length ? keys.map(function (k) { return k + "=" + text(v[k]); }).join(", ") : "—";
    }
    return String(v);
  }

  /* The fields that differ between two documents: [{path, before, after}],
     field by field inside groups present on both sides, whole groups otherwise
     (rate_limit off -> rps=50, burst=80). */
  function diff(before, after) {
    const out = [];
    (function compare(a, b, path) {
      if (isGroup(a) && isGroup(b)) {
        const keys = Array.from(new Set(Object.keys(a).concat(Object.keys(b)))).sort();
        for (const key of keys) compare(a[key], b[key], path ? path + "." + key : key);
      } else if (JSON.stringify(a) !== JSON.stringify(b)) {
        out.push({ path: path, before: text(a), after: text(b) });
      }
    })(before || {}, after || {}, "");
    return out;
  }

  function diffTable(changes) {
    if (!changes.length) return el("p", { class: "muted" }, "Nothing changed.");
    return el("table", { class: "table diff" },
      el("thead", null, el("tr", null, el("th", null, "field"), el("th", null, "now"), el("th", null, "after"))),
      el("tbody", null, changes.map(function (c) {
        return el("tr", { dataset: { path: c.path } }, el("td", { class: "mono" }, c.path),
          el("td", { class: "before" }, c.before), el("td", { class: "after" }, c.after));
      })));
  }

  function changedText(paths) {
    if (!paths.length) return "—";
    return paths.length > 6 ? paths.slice(0, 6).join(", ") + " and " + (paths.length - 6) + " more" : paths.join(", ");
  }

  /* A versioned document's history (the traffic policy, the routes) into
     OPTS.body, a <tbody> of five columns: newest first, what each version
     changed from the one before (OPTS.changed(older, newer) -> paths), and
     "current" or a "roll back" button (OPTS.rollback(version)). */
  async function versionHistory(opts) {
    const body = opts.body;
    function only(text) { return el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, text)); }
    let versions;
    try {
      versions = await Mesh.api(opts.url);
    } catch (e) {
      body.replaceChildren(only("Versions unavailable: " + e.message));
      return;
    }
    const current = opts.current();
    const rows = versions.map(function (v, i) {
      const older = versions[i + 1];
      return el("tr", { dataset: { version: v.version } },
        el("td", null, "v" + v.version),
        el("td", { class: "nowrap" }, el("time", { datetime: v.created_at }, Mesh.clock(v.created_at))),
        el("td", null, v.created_by || "—"),
        el("td", { class: "small" }, older ? changedText(opts.changed(older.document, v.document)) : "first version"),
        el("td", null, v.version === current ? el("span", { class: "muted small" }, "current") :
          el("button", { type: "button", class: "link-button " + (opts.buttonClass || ""), dataset: { rollback: v.version },
            onclick: function () { opts.rollback(v); } }, "roll back")));
    });
    body.replaceChildren.apply(body, rows.length ? rows : [only(opts.empty || "No saved version yet.")]);
  }

  /* A 400-shaped error for what the page refuses before asking the API: DATA as the
     API's field errors (showErrors places it), or MESSAGE at the dotted PATH. */
  function badRequest(data) {
    const error = new Error("refused");
    error.status = 400;
    error.data = data;
    return error;
  }

  function fieldError(path, message) {
    const data = {};
    let at = data;
    const parts = path.split(".");
    parts.slice(0, -1).forEach(function (p) { at = at[p] = {}; });
    at[parts[parts.length - 1]] = [message];
    const error = badRequest(data);
    error.message = message;
    return error;
  }

  Object.assign(window.Mesh, {
    badRequest: badRequest, fieldError: fieldError,
    confirm: confirmDialog, formDialog: formDialog, showErrors: showErrors, clearErrors: clearErrors,
    splitList: splitList, number: number, diff: diff, diffTable: diffTable, versionHistory: versionHistory,
  });
})();
