/* Topology time travel on the overview: a slider over the recorded minutes
   (GET /api/v1/topology/history/), each position drawn from that minute's frame
   (GET /api/v1/topology/history/at/?at=), the configuration changes marked on
   the timeline; a mark opens its before/after diff. "Back to live" resumes the
   live pushes (overview.js keeps them while the past is shown). */
(function () {
  "use strict";
  const el = Mesh.el;
  let frames = [];
  let changes = [];
  let asked = 0;

  function position(ts) {
    if (frames.length < 2) return 100;
    const first = Date.parse(frames[0]);
    const last = Date.parse(frames[frames.length - 1]);
    return Math.max(0, Math.min(100, ((Date.parse(ts) - first) / (last - first || 1)) * 100));
  }

  function flat(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const key of Object.keys(value)) flat(value[key], prefix ? prefix + "." + key : key, out);
    } else {
      out[prefix] = JSON.stringify(value === undefined ? null : value);
    }
    return out;
  }

  /* The fields a change moved: before -> after. */
  function diffRows(before, after) {
    const a = flat(before || {}, "", {});
    const b = flat(after || {}, "", {});
    const keys = Array.from(new Set(Object.keys(a).concat(Object.keys(b)))).sort();
    return keys.filter(function (k) { return a[k] !== b[k]; }).map(function (k) {
      return el("tr", { dataset: { field: k } }, el("td", null, el("code", null, k)),
        el("td", { class: "diff-before" }, a[k] === undefined ? "—" : a[k]),
        el("td", { class: "diff-after" }, b[k] === undefined ? "—" : b[k]));
    });
  }

  function showChange(change) {
    const rows = diffRows(change.before, change.after);
    Mesh.confirm({
      title: change.summary,
      confirmLabel: "Close",
      body: [
        el("p", { class: "muted" }, Mesh.clock(change.ts) + " · " + change.kind),
        rows.length ? el("table", { class: "diff", dataset: { changeDiff: change.kind + "-" + change.id } },
          el("thead", null, el("tr", null, el("th", null, "field"), el("th", null, "before"), el("th", null, "after"))),
          el("tbody", null, rows)) : el("p", null, "No field-level difference recorded."),
        change.kind === "audit" ? el("p", null, el("a", { href: "/audit/?object_id=" + encodeURIComponent(change.object_id) },
          "See it in the audit trail")) : null,
      ],
    });
  }

  function renderMarks() {
    const box = document.getElementById("timeline-marks");
    box.replaceChildren.apply(box, changes.map(function (c) {
      return el("button", {
        type: "button", class: "mark mark-" + c.kind, title: Mesh.clock(c.ts) + " " + c.summary,
        "aria-label": c.summary, style: "left: " + position(c.ts) + "%",
        dataset: { changeId: c.kind + "-" + c.id, ts: c.ts },
        onclick: function () { showChange(c); },
      });
    }));
  }

  async function show(index) {
    const slider = document.getElementById("time-slider");
    const label = document.getElementById("time-label");
    const live = document.getElementById("time-live");
    if (index >= frames.length) {
      label.textContent = "live";
      live.hidden = true;
      slider.dataset.showing = "live";
      Mesh.topology.live();
      return;
    }
    const ticket = ++asked;
    label.textContent = Mesh.clock(frames[index]) + " …";
    try {
      const frame = await Mesh.api("/api/v1/topology/history/at/?at=" + encodeURIComponent(frames[index]));
      if (ticket !== asked) return;  // the slider moved on meanwhile
      Mesh.topology.replay(frame.topology);
      label.textContent = Mesh.clock(frame.minute) + (frame.changes.length ? " · " + frame.changes.length + " change(s)" : "");
      slider.dataset.showing = frame.minute;
      live.hidden = false;
    } catch (e) {
      label.textContent = "Could not load that minute: " + e.message;
    }
  }

  async function load() {
    const slider = document.getElementById("time-slider");
    try {
      const history = await Mesh.api("/api/v1/topology/history/");
      frames = history.frames;
      changes = history.changes;
    } catch (e) {
      document.getElementById("time-label").textContent = "History unavailable: " + e.message;
      return;
    }
    // The last position is "live"; each one before it a recorded minute.
    slider.max = String(frames.length);
    if (slider.dataset.showing === undefined || slider.dataset.showing === "live") slider.value = String(frames.length);
    slider.disabled = frames.length === 0;
    slider.dataset.frames = String(frames.length);
    renderMarks();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const slider = document.getElementById("time-slider");
    if (!slider) return;
    let moving = null;
    slider.addEventListener("input", function () {
      clearTimeout(moving);
      const index = Number(slider.value);
      moving = setTimeout(function () { show(index); }, 120);
    });
    document.getElementById("time-live").addEventListener("click", function () {
      slider.value = slider.max;
      show(frames.length);
    });
    load();
    setInterval(function () { if (!document.hidden) load(); }, 60000);
  });
})();
