/* Service page: live instances (with maintenance switch, drain/enable/disable,
   weight, the one-line explanation and an expandable timeline), a bulk action
   form, traffic chart, events. */
(function () {
  "use strict";
  const el = Mesh.el;
  const INK = "#c9d1d9";
  const GRID = "#21262d";
  const METRICS_PERIOD_MS = 10000;
  const COLUMNS = 11; // the instances table's
  let service = null;
  // The role's rights on this service (base.html); the API refuses the rest anyway.
  const canOperate = document.body.hasAttribute("data-can-operate");
  const pending = new Set(); // instance ids with a maintenance change in flight
  const expanded = new Set(); // instance ids whose timeline is open
  const timelines = {}; // instance id -> explain payload (or {error})

  function base() {
    return "/api/v1/services/" + encodeURIComponent(service.name) + "/";
  }

  /* The server's label (monitoring.topology.service_state_label), with words. */
  function stateText(s) {
    const h = s.health;
    const held = Object.keys(s.held || {}).map(function (k) { return s.held[k] + " " + k; });
    if (s.state === "failover") return "failed over to " + s.failover.active_target;
    return h.passing + "/" + h.total + " passing" + (held.length ? " · " + held.join(", ") : "");
  }

  function renderFailover() {
    const f = service.failover;
    const card = document.getElementById("failover-card");
    card.hidden = !f.active_target;
    if (!f.active_target) return;
    const holdDown = f.hold_down_ms === null ? "" : Mesh.duration(f.hold_down_ms);
    // el() flattens the nested lists (replaceChildren would print them).
    document.getElementById("failover-text").replaceChildren(el("span", null,
      "Traffic for ", el("strong", null, service.name), " goes to ",
      el("a", { href: "/services/" + encodeURIComponent(f.active_target) + "/", dataset: { failoverTarget: f.active_target } }, f.active_target),
      f.activated_at ? [" since ", el("time", { datetime: f.activated_at }, Mesh.clock(f.activated_at))] : null,
      f.reason ? " (" + f.reason + ")" : null, ". ",
      f.healthy_since ? ["Healthy again since ", el("time", { datetime: f.healthy_since }, Mesh.clock(f.healthy_since)),
        "; fails back after a hold-down of ", el("span", { dataset: { holdDown: "" } }, holdDown), " of continuous health."] :
        ["Fails back once it has been healthy for the hold-down of ", el("span", { dataset: { holdDown: "" } }, holdDown), "."]));
  }

  function facts(target, pairs) {
    target.replaceChildren.apply(target, [].concat.apply([], pairs.map(function (p) {
      return [el("dt", null, p[0]), el("dd", null, p[1])];
    })));
  }

  function renderService() {
    const label = service.state;
    const badge = document.getElementById("service-health");
    badge.className = "health " + label;
    badge.dataset.health = label;
    badge.replaceChildren(el("i", { class: "dot " + label }), stateText(service));
    renderFailover();
    document.getElementById("service-description").textContent = service.description || "";
    const mtls = document.getElementById("service-mtls");
    if (mtls && service.mtls) mtls.textContent = service.mtls;
    const c = service.check;
    facts(document.getElementById("service-check"), [
      ["type", c.type],
      ["path", c.type === "http" ? c.path : "—"],
      ["interval", c.interval],
      ["timeout", c.timeout],
      ["rise / fall", c.rise + " / " + c.fall],
    ].concat(c.type === "http" ? [
      ["expect status", c.expect_status],
      ["body contains", c.body || "—"],
      ["headers", Object.keys(c.headers || {}).length ? Object.keys(c.headers).map(function (k) {
        return el("div", { class: "mono small" }, k + ": " + c.headers[k]);
      }) : "—"],
    ] : []));
    facts(document.getElementById("service-facts"), [
      ["protocol", service.protocol],
      ["drain timeout", service.drain_timeout],
      ["panic", service.in_panic ? el("span", { class: "status critical" }, "in panic mode") : "no"],
      ["failover", service.failover.targets.length ? el("span", { dataset: { failoverTargets: "" } },
        service.failover.targets.join(", ") + " (hold-down " + Mesh.duration(service.failover.hold_down_ms) + ")") :
        el("a", { href: "policy/" }, "none set")],
      ["tags", service.tags.length ? service.tags.map(function (t) { return el("span", { class: "tag" }, t); }) : "—"],
    ]);
    renderInstances();
  }

  function actionButtons(i) {
    if (!canOperate) return [];
    const wanted = {
      enabled: ["drain", "maintenance", "disable"],
      draining: ["enable", "maintenance"],
      maintenance: ["enable", "disable"],
      disabled: ["enable"],
    }[adminState(i)];
    return wanted.map(function (name) {
      return el("button", {
        type: "button", class: "link-button action", dataset: { action: name, instance: i.id },
        disabled: pending.has(i.id),
        onclick: function () { command(i, name); },
      }, name);
    });
  }

  function adminState(i) {
    return ["maintenance", "draining", "disabled"].indexOf(i.status) >= 0 ? i.status : "enabled";
  }

  function weightInput(i) {
    return el("input", {
      type: "number", min: 0, max: 10000, class: "weight-input", value: i.weight,
      "aria-label": "weight of " + i.address + ":" + i.port,
      dataset: { weightFor: i.id }, disabled: pending.has(i.id) || !canOperate,
      // change, Enter and blur all commit (a live re-render keeps a typed value
      // but not the browser's "changed since focus" mark); once per value.
      onchange: commitWeight, onblur: commitWeight,
      onkeydown: function (event) { if (event.key === "Enter") commitWeight(event); },
    });
    function commitWeight(event) {
      const input = event.target;
      const weight = parseInt(input.value, 10);
      if (isNaN(weight) || weight === i.weight || input.dataset.sent === String(weight)) return;
      input.dataset.sent = String(weight);
      command(i, "weight", { weight: weight });
    }
  }

  function timelineRow(i) {
    const data = timelines[i.id];
    let content;
    if (!data) content = el("p", { class: "muted small" }, "Loading…");
    else if (data.error) content = el("p", { class: "alert" }, "Timeline unavailable: " + data.error);
    else if (!data.timeline.length) content = el("p", { class: "muted small" }, "Nothing recorded yet.");
    else content = el("ol", { class: "timeline" }, data.timeline.slice().reverse().map(function (e) {
      return el("li", { dataset: { kind: e.kind } },
        el("time", { datetime: e.ts }, Mesh.clock(e.ts)), " ",
        el("span", { class: "pill" }, e.kind), " ", e.message,
        e.actor ? el("span", { class: "muted" }, " — " + e.actor) : null);
    }));
    return el("tr", { class: "timeline-row", dataset: { timeline: i.id } }, el("td", { colspan: COLUMNS }, content));
  }

  async function loadTimeline(id) {
    try {
      timelines[id] = await Mesh.api(base() + "instances/" + encodeURIComponent(id) + "/explain/");
    } catch (e) {
      timelines[id] = { error: e.message };
    }
    renderInstances();
  }

  function toggleTimeline(i) {
    if (expanded.has(i.id)) expanded.delete(i.id);
    else { expanded.add(i.id); loadTimeline(i.id); }
    renderInstances();
  }

  async function command(instance, name, body) {
    const error = document.getElementById("instance-error");
    if (!(await Mesh.confirmInstance(instance, name, body && body.weight))) { renderInstances(); return; }
    pending.add(instance.id);
    error.hidden = true;
    renderInstances();
    try {
      const updated = await Mesh.api(base() + "instances/" + encodeURIComponent(instance.id) + "/" + name + "/", {
        method: "POST", body: body || {},
      });
      service.instances = service.instances.map(function (i) { return i.id === updated.id ? updated : i; });
      if (expanded.has(instance.id)) loadTimeline(instance.id);
    } catch (e) {
      error.textContent = "Could not " + name + " " + instance.address + ":" + instance.port + ": " + e.message;
      error.hidden = false;
    } finally {
      pending.delete(instance.id);
      renderInstances();
    }
  }

  function splitList(text) {
    return text.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
  }

  async function submitBulk(event) {
    event.preventDefault();
    const form = event.target;
    const result = document.getElementById("bulk-result");
    const metadata = {};
    for (const pair of splitList(form.elements.metadata.value)) {
      const at = pair.indexOf("=");
      if (at < 1) { result.textContent = "metadata: expected key=value, got " + pair; return; }
      metadata[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
    }
    const body = {
      selector: { tags: splitList(form.elements.tags.value), metadata: metadata },
      all: form.elements.all.checked,
      action: form.elements.action.value,
    };
    if (body.action === "weight") body.weight = parseInt(form.elements.weight.value, 10);
    // An empty selector goes straight to the API, which refuses it with the reason.
    const empty = !body.all && !body.selector.tags.length && !Object.keys(metadata).length;
    if (!empty && !(await Mesh.confirmBulk(body))) { result.textContent = "Cancelled."; return; }
    result.textContent = "Applying…";
    try {
      const data = await Mesh.api(base() + "instances/bulk/", { method: "POST", body: body });
      result.textContent = body.action + ": " + data.affected.length + " instance(s) changed";
      result.dataset.affected = data.affected.length;
    } catch (e) {
      result.textContent = "Bulk " + body.action + " refused: " + e.message;
      delete result.dataset.affected;
    }
  }

  function renderInstances() {
    const body = document.querySelector("#instance-table tbody");
    // A live push must not throw away a weight someone is typing.
    const active = document.activeElement;
    const typing = active && active.classList.contains("weight-input") && body.contains(active)
      ? { id: active.dataset.weightFor, value: active.value } : null;
    document.getElementById("instance-count").textContent = service.instances.length;
    Mesh.instanceMetrics.sync(service.instances);
    const rows = [];
    service.instances.forEach(function (i) {
      rows.push(instanceRow(i));
      if (expanded.has(i.id)) rows.push(timelineRow(i));
    });
    body.replaceChildren.apply(body, rows.length ? rows : [
      el("tr", { class: "empty-row" }, el("td", { colspan: COLUMNS }, "No instances registered."))]);
    if (typing) {
      const again = body.querySelector("input[data-weight-for='" + CSS.escape(typing.id) + "']");
      if (again && !again.disabled) { again.value = typing.value; again.focus(); }
    }
  }

  function instanceRow(i) {
    const inMaintenance = i.status === "maintenance";
    const toggle = el("input", {
      type: "checkbox", role: "switch", class: "switch",
      "aria-label": "maintenance for " + i.address + ":" + i.port,
      dataset: { instance: i.id },
      checked: inMaintenance,
      disabled: pending.has(i.id) || !canOperate,
      onchange: function (event) { setMaintenance(i, event.target); },
    });
    const reason = i.explanation || i.status_reason;
    return el("tr", { dataset: { instance: i.id, status: i.status } },
      el("td", { class: "mono" }, i.address + ":" + i.port),
      el("td", null, i.zone || "—"),
      el("td", { class: "num" }, weightInput(i)),
      el("td", null, i.node || "—"),
      Mesh.instanceMetrics.cells(i.id),
      el("td", null, el("span", { class: "status " + i.status }, i.status),
        reason ? el("div", { class: "reason explanation", dataset: { instance: i.id } }, reason) : null,
        el("button", {
          type: "button", class: "link-button small timeline-toggle", dataset: { instance: i.id },
          "aria-expanded": expanded.has(i.id) ? "true" : "false",
          onclick: function () { toggleTimeline(i); },
        }, expanded.has(i.id) ? "hide timeline" : "timeline")),
      el("td", null, i.last_heartbeat ? el("time", { datetime: i.last_heartbeat, title: Mesh.clock(i.last_heartbeat) }, Mesh.ago(i.last_heartbeat)) : "—"),
      el("td", null, el("label", { class: "switch-label" }, toggle, el("span", null, inMaintenance ? "on" : "off"))),
      el("td", { class: "actions" }, actionButtons(i)));
  }

  async function setMaintenance(instance, input) {
    const wanted = input.checked;
    const error = document.getElementById("instance-error");
    if (!(await Mesh.confirmInstance(instance, wanted ? "maintenance" : "enable"))) {
      input.checked = !wanted;
      renderInstances();
      return;
    }
    pending.add(instance.id);
    input.disabled = true;
    error.hidden = true;
    try {
      const updated = await Mesh.api(base() + "instances/" + encodeURIComponent(instance.id) + "/", {
        method: "PATCH", body: { maintenance: wanted },
      });
      service.instances = service.instances.map(function (i) { return i.id === updated.id ? updated : i; });
    } catch (e) {
      error.textContent = "Could not change maintenance of " + instance.address + ":" + instance.port + ": " + e.message;
      error.hidden = false;
    } finally {
      pending.delete(instance.id);
      renderInstances();
    }
  }

  async function loadEvents() {
    const body = document.querySelector("#service-events tbody");
    try {
      // A page of the 20 newest ({count, next, previous, results}).
      const events = (await Mesh.api("/api/v1/events/?service=" + encodeURIComponent(service.name) + "&limit=20")).results;
      const rows = events.map(function (e) {
        return el("tr", { dataset: { event: e.id } },
          el("td", { class: "nowrap" }, el("time", { datetime: e.ts }, Mesh.clock(e.ts))),
          el("td", null, el("span", { class: "pill" }, e.kind)),
          el("td", null, el("span", { class: "severity " + e.severity }, e.severity)),
          el("td", null, e.message));
      });
      body.replaceChildren.apply(body, rows.length ? rows : [
        el("tr", { class: "empty-row" }, el("td", { colspan: 4 }, "No events yet."))]);
    } catch (e) {
      body.replaceChildren(el("tr", { class: "empty-row" }, el("td", { colspan: 4 }, "Events unavailable: " + e.message)));
    }
  }

  let eventsTimer = null;
  function loadEventsSoon() {
    clearTimeout(eventsTimer);
    eventsTimer = setTimeout(loadEvents, 300);
  }

  // Each load is numbered: an answer that comes back after a newer load began (a
  // periodic refresh of the whole service overtaken by a switch to one instance)
  // is dropped, so the chart always shows what the selectors say.
  let metricsLoads = 0;
  async function loadMetrics() {
    const target = document.getElementById("service-chart");
    const note = document.getElementById("chart-note");
    const load = ++metricsLoads;
    let metrics;
    let shown;
    try {
      const windowSelect = document.getElementById("chart-window");
      const directionSelect = document.getElementById("chart-direction");
      const instancePath = Mesh.instanceMetrics.chartPath();
      // An instance's series is what it served ("in"): its callers' tries.
      directionSelect.disabled = instancePath !== null;
      if (instancePath) directionSelect.value = "in";
      shown = document.getElementById("chart-instance").value;
      metrics = await Mesh.api(base() + (instancePath || "metrics/") + "?window=" +
        encodeURIComponent(windowSelect.value) + "&direction=" + encodeURIComponent(directionSelect.value));
    } catch (e) {
      if (load !== metricsLoads) return;
      note.textContent = e.status === 404 ? "Metrics are not available for this service yet." : "Metrics unavailable: " + e.message;
      note.hidden = false;
      return;
    }
    if (load !== metricsLoads) return;
    target.dataset.instance = shown;
    const points = metrics.points || [];
    note.hidden = points.length > 0;
    const span = document.getElementById("chart-window").selectedOptions[0].textContent;
    const what = metrics.instance ? document.getElementById("chart-instance").selectedOptions[0].textContent : service.name;
    note.textContent = (metrics.direction === "out" ? "No traffic from " : "No traffic to ") +
      what + " in the last " + span + ".";
    const step = document.getElementById("chart-step");
    step.textContent = "one point per " + Mesh.duration(metrics.step_seconds * 1000) +
      (metrics.source === "windows" ? "" : " (rolled up)");
    target.dataset.direction = metrics.direction;
    target.dataset.window = String(metrics.window_seconds);
    const t = points.map(function (p) { return p.t; });
    const pick = function (key) { return points.map(function (p) { return p[key]; }); };
    const errorsPerSecond = points.map(function (p) { return (p.rps || 0) * (p.error_rate || 0); });
    const line = function (name, key, color, dash) {
      return { type: "scatter", mode: "lines", name: name, x: t, y: pick(key), yaxis: "y2",
        line: { color: color, width: 1.5, dash: dash || "solid" }, connectgaps: false,
        hovertemplate: "%{y:.1f} ms<extra>" + name + "</extra>" };
    };
    const data = [
      { type: "scatter", mode: "lines", name: "rps", x: t, y: pick("rps"), fill: "tozeroy",
        line: { color: "#58a6ff", width: 2 }, fillcolor: "rgba(88,166,255,0.15)",
        hovertemplate: "%{y:.2f} rps<extra></extra>" },
      { type: "scatter", mode: "lines", name: "errors/s", x: t, y: errorsPerSecond,
        line: { color: "#f85149", width: 1.5 }, hovertemplate: "%{y:.2f} errors/s<extra></extra>" },
      line("p50", "p50_ms", "#3fb950"),
      line("p95", "p95_ms", "#d29922", "dot"),
      line("p99", "p99_ms", "#f0883e", "dash"),
    ];
    const layout = {
      height: 260,
      margin: { l: 44, r: 50, t: 8, b: 30 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: INK, size: 11 },
      hovermode: "x unified",
      legend: { orientation: "h", x: 0, y: 1.12, font: { size: 11 } },
      xaxis: { gridcolor: GRID, type: "date" },
      yaxis: { title: { text: "req/s" }, gridcolor: GRID, rangemode: "tozero" },
      yaxis2: { title: { text: "ms" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false },
      uirevision: "metrics",
    };
    Plotly.react(target, data, layout, { displayModeBar: false, responsive: true });
  }

  /* A write's answer (the service without its instances) before the live push. */
  Mesh.serviceUpdate = function (partial) { apply(Object.assign({}, service, partial)); };

  function apply(data) {
    service = data;
    window.meshService = data;
    renderService();
    document.dispatchEvent(new CustomEvent("mesh:service", { detail: data }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    apply(JSON.parse(document.getElementById("service-data").textContent));
    document.getElementById("bulk-form").addEventListener("submit", submitBulk);
    loadEvents();
    loadMetrics();
    setInterval(function () { if (!document.hidden) loadMetrics(); }, METRICS_PERIOD_MS);
    Mesh.instanceMetrics.start(service.name, renderInstances);
    for (const id of ["chart-window", "chart-direction", "chart-instance"]) {
      document.getElementById(id).addEventListener("change", loadMetrics);
    }
    setInterval(function () { // "x s ago"; not while someone edits a weight
      const editing = document.activeElement && document.activeElement.classList.contains("weight-input");
      if (!document.hidden && !editing) renderInstances();
    }, 5000);
    // Shared with the routes editor (routes-editor.js): one socket per page.
    Mesh.serviceLive = Mesh.live()
      .on("service", function (message) {
        if (message.data.name !== service.name) return;
        apply(message.data);
        loadEventsSoon();
        expanded.forEach(loadTimeline);
      })
      .on("service.removed", function (message) {
        if (message.name !== service.name) return;
        const error = document.getElementById("instance-error");
        error.textContent = "This service has been deregistered.";
        error.hidden = false;
        service.instances = [];
        renderInstances();
      })
      .subscribe({ topic: "service", name: service.name });
  });
})();
