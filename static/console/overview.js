/* Overview: the live topology graph (plotly), the service list and the edge table. */
(function () {
  "use strict";
  const el = Mesh.el;
  // One colour per state label (monitoring.topology.service_state_label); the
  // same as console.css's --passing ... --failover.
  const COLORS = { passing: "#3fb950", warning: "#d29922", critical: "#f85149", empty: "#6e7681",
    maintenance: "#a371f7", draining: "#db61a2", disabled: "#484f58", failover: "#39c5cf" };
  function state(n) { return n.state || n.health; }
  const INK = "#c9d1d9";
  const MUTED = "#8b949e";

  /*
   * Deterministic layered layout: a service's column is its call depth (the
   * longest caller chain leading to it; cycles are cut at N), rows ordered by
   * the mean row of their callers to limit crossings. Services with no traffic
   * sit in a grid below.
   */
  /* The calls minus the back edges of a depth-first walk from the entry points
     (services nobody calls, by name): what is left has no cycle. */
  function acyclic(names, calls) {
    const out = {};
    const incoming = new Set(calls.map(function (e) { return e.destination; }));
    for (const e of calls) (out[e.source] = out[e.source] || []).push(e);
    const state = {}; // 1 = on the walk's stack, 2 = done
    const keep = [];
    function walk(name) {
      state[name] = 1;
      for (const e of out[name] || []) {
        if (state[e.destination] === 1) continue; // back edge: closes a cycle
        keep.push(e);
        if (!state[e.destination]) walk(e.destination);
      }
      state[name] = 2;
    }
    const roots = names.filter(function (name) { return !incoming.has(name); });
    for (const name of roots.concat(names)) if (!state[name]) walk(name);
    return keep;
  }

  function layout(nodes, edges) {
    const names = nodes.map(function (n) { return n.name; });
    const n = names.length;
    const depth = {};
    const linked = new Set();
    for (const name of names) depth[name] = 0;
    const calls = edges.filter(function (e) { return e.source !== e.destination; });
    for (const e of calls) { linked.add(e.source); linked.add(e.destination); }
    const forward = acyclic(names, calls);
    for (let round = 0; round < n; round++) {
      let moved = false;
      for (const e of forward) {
        const d = depth[e.source] + 1;
        if (d > depth[e.destination]) { depth[e.destination] = d; moved = true; }
      }
      if (!moved) break;
    }
    const layers = [];
    for (const name of names) {
      if (!linked.has(name)) continue;
      (layers[depth[name]] = layers[depth[name]] || []).push(name);
    }
    const pos = {};
    let tallest = 0;
    layers.forEach(function (layer, x) {
      if (!layer) return;
      if (x > 0) {
        const mean = function (name) {
          const ys = calls.filter(function (e) { return e.destination === name && pos[e.source]; })
            .map(function (e) { return pos[e.source].y; });
          return ys.length ? ys.reduce(function (a, b) { return a + b; }, 0) / ys.length : 0;
        };
        layer.sort(function (a, b) { return mean(b) - mean(a) || a.localeCompare(b); });
      }
      tallest = Math.max(tallest, layer.length);
      layer.forEach(function (name, i) { pos[name] = { x: x, y: (layer.length - 1) / 2 - i }; });
    });
    const loners = names.filter(function (name) { return !linked.has(name); });
    const width = Math.max(layers.length - 1, 0);
    const perRow = Math.max(4, Math.min(8, (width + 1) * 2));
    const top = linked.size ? -(tallest / 2) - 0.6 : 0;
    loners.forEach(function (name, i) {
      const row = Math.floor(i / perRow);
      const inRow = Math.min(perRow, loners.length - row * perRow);
      const col = i % perRow;
      const span = linked.size ? Math.max(width, 1) : Math.max(inRow - 1, 1) * 0.8;
      pos[name] = {
        x: inRow === 1 ? span / 2 : (col * span) / (inRow - 1),
        y: top - row * 1.1,
      };
    });
    return pos;
  }

  /* A quadratic curve from a to b, bowed sideways by bend x its length. */
  function curve(a, b, bend) {
    const len = Math.hypot(b.x - a.x, b.y - a.y) || 1;
    const c = {
      x: (a.x + b.x) / 2 - ((b.y - a.y) / len) * bend * len,
      y: (a.y + b.y) / 2 + ((b.x - a.x) / len) * bend * len,
    };
    const at = function (t) {
      const u = 1 - t;
      return { x: u * u * a.x + 2 * u * t * c.x + t * t * b.x, y: u * u * a.y + 2 * u * t * c.y + t * t * b.y };
    };
    const xs = [], ys = [];
    for (let i = 0; i <= 24; i++) { const p = at(i / 24); xs.push(p.x); ys.push(p.y); }
    return { xs: xs, ys: ys, at: at };
  }

  /* Whether a straight a->b passes close to some other node. */
  function blocked(a, b, points) {
    const len2 = (b.x - a.x) ** 2 + (b.y - a.y) ** 2 || 1;
    return points.some(function (p) {
      if (p === a || p === b) return false;
      const t = ((p.x - a.x) * (b.x - a.x) + (p.y - a.y) * (b.y - a.y)) / len2;
      if (t <= 0.05 || t >= 0.95) return false;
      const qx = a.x + t * (b.x - a.x), qy = a.y + t * (b.y - a.y);
      return Math.hypot(p.x - qx, p.y - qy) < 0.2;
    });
  }

  function edgeColor(e) {
    if (e.error_rate >= 0.05) return COLORS.critical;
    if (e.error_rate >= 0.01) return COLORS.warning;
    return "#58a6ff";
  }

  function figure(topology) {
    const nodes = topology.nodes.slice();
    const known = new Set(nodes.map(function (n) { return n.name; }));
    // Callers that are not registered services (e.g. "unknown") still get a node.
    for (const e of topology.edges) {
      for (const name of [e.source, e.destination]) {
        if (!known.has(name)) {
          known.add(name);
          nodes.push({ name: name, passing: 0, total: 0, health: "empty", external: true });
        }
      }
    }
    nodes.sort(function (a, b) { return a.name.localeCompare(b.name); });
    const pos = layout(nodes, topology.edges);
    const pairs = new Set(topology.edges.map(function (e) { return e.source + ">" + e.destination; }));
    const annotations = [];
    const lines = [];
    const mid = { x: [], y: [], text: [] };
    for (const e of topology.edges) {
      const a = pos[e.source];
      const b = pos[e.destination];
      if (!a || !b) continue;
      const label = e.rps.toFixed(e.rps < 10 ? 2 : 0) + " rps · " + Mesh.percent(e.error_rate) + " err";
      const hover = "<b>" + e.source + " → " + e.destination + "</b><br>" + e.rps + " rps, " +
        Mesh.percent(e.error_rate) + " errors (" + e.errors + "/" + e.requests + ")<br>p50 " +
        Mesh.ms(e.p50_ms) + " · p95 " + Mesh.ms(e.p95_ms) + " · p99 " + Mesh.ms(e.p99_ms);
      if (e.source === e.destination) {
        annotations.push({ x: a.x, y: a.y + 0.28, text: "↻ " + label, showarrow: false,
          font: { size: 11, color: MUTED }, hovertext: hover });
        continue;
      }
      // Bend an edge when it would hide another (calls both ways, or a node in its path).
      let bend = 0;
      if (pairs.has(e.destination + ">" + e.source)) bend = 0.12;
      if (blocked(a, b, nodes.map(function (n) { return pos[n.name]; }))) bend = 0.3;
      const path = curve(a, b, bend);
      const color = edgeColor(e);
      lines.push({
        type: "scatter", mode: "lines", x: path.xs, y: path.ys, hoverinfo: "skip",
        line: { color: color, width: 1.5 + Math.min(4, Math.log10(1 + e.rps) * 2), shape: "spline" },
      });
      const tail = path.at(0.8);
      annotations.push({
        x: b.x, y: b.y, ax: tail.x, ay: tail.y,
        xref: "x", yref: "y", axref: "x", ayref: "y",
        showarrow: true, arrowhead: 2, arrowsize: 1, arrowwidth: 2,
        arrowcolor: color, standoff: 17, text: "",
      });
      const m = path.at(0.5);
      annotations.push({
        x: m.x, y: m.y, text: label, showarrow: false,
        font: { size: 11, color: e.error_rate >= 0.01 ? color : INK },
        bgcolor: "rgba(22,27,34,0.9)", borderpad: 2,
      });
      mid.x.push(m.x); mid.y.push(m.y); mid.text.push(hover);
    }
    const xs = nodes.map(function (n) { return pos[n.name].x; });
    const ys = nodes.map(function (n) { return pos[n.name].y; });
    const nodeTrace = {
      type: "scatter", mode: "markers+text", x: xs, y: ys,
      text: nodes.map(function (n) {
        return "<b>" + n.name + "</b> " + n.passing + "/" + n.total + (n.failover ? " → " + n.failover : "");
      }),
      textposition: "bottom center",
      textfont: { color: INK, size: 12 },
      customdata: nodes.map(function (n) { return n.external ? "" : n.name; }),
      hovertext: nodes.map(function (n) {
        return "<b>" + n.name + "</b><br>" + (n.external ? "not a registered service" :
          n.protocol + " · " + n.passing + " of " + n.total + " instances routable" +
          Object.keys(n.held || {}).map(function (k) { return "<br>" + n.held[k] + " in " + k; }).join("") +
          (n.failover ? "<br>failed over to <b>" + n.failover + "</b>" : ""));
      }),
      hoverinfo: "text",
      marker: {
        size: 30,
        color: nodes.map(function (n) { return COLORS[state(n)] || COLORS.empty; }),
        line: { color: "#0d1117", width: 3 },
        symbol: nodes.map(function (n) { return n.external ? "diamond" : "circle"; }),
      },
    };
    const edgeHover = {
      type: "scatter", mode: "markers", x: mid.x, y: mid.y, hovertext: mid.text, hoverinfo: "text",
      marker: { size: 26, color: "rgba(0,0,0,0)" },
    };
    const pad = 0.6;
    const axis = function (values, extra) {
      const lo = values.length ? Math.min.apply(null, values) : 0;
      const hi = values.length ? Math.max.apply(null, values) : 1;
      return { visible: false, range: [lo - pad - extra, hi + pad], fixedrange: false, zeroline: false };
    };
    return {
      data: lines.concat([edgeHover, nodeTrace]),
      layout: {
        annotations: annotations,
        xaxis: axis(xs, 0),
        yaxis: axis(ys, 0.3),
        showlegend: false,
        hovermode: "closest",
        hoverlabel: { bgcolor: "#161b22", bordercolor: "#30363d", font: { color: INK } },
        margin: { l: 10, r: 10, t: 10, b: 10 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        // Tall enough for the rows drawn, no more.
        height: Math.max(300, Math.min(680, 200 + (Math.max.apply(null, ys) - Math.min.apply(null, ys)) * 110)),
        uirevision: "topology",
      },
    };
  }

  function renderGraph(topology) {
    const target = document.getElementById("topology-graph");
    if (!topology.nodes.length && !topology.edges.length) {
      Plotly.purge(target);
      target.replaceChildren(el("p", { class: "graph-empty" },
        "No services yet. Register one through the API or start an agent."));
      return;
    }
    if (target.querySelector(".graph-empty")) target.replaceChildren();
    const fig = figure(topology);
    Plotly.react(target, fig.data, fig.layout, { displayModeBar: false, responsive: true });
    if (!target.dataset.bound) {
      target.dataset.bound = "1";
      target.on("plotly_click", function (event) {
        const name = event.points && event.points[0] && event.points[0].customdata;
        if (name) location.href = "/services/" + encodeURIComponent(name) + "/";
      });
    }
  }

  function renderList(topology) {
    const list = document.getElementById("topology-services");
    const items = topology.nodes.map(function (n) {
      return el("li", { dataset: { service: n.name, health: n.health, state: state(n) } },
        el("a", { href: "/services/" + encodeURIComponent(n.name) + "/" },
          el("i", { class: "dot " + state(n) }), n.name),
        el("span", { class: "muted" }, n.failover ? el("span", { class: "failover-note" }, "→ " + n.failover + " ") : null,
          n.passing + "/" + n.total));
    });
    list.replaceChildren.apply(list, items.length ? items : [el("li", { class: "empty-row" }, "No services registered yet.")]);
    document.getElementById("service-count").textContent = topology.nodes.length;
  }

  function renderEdges(topology) {
    const body = document.querySelector("#edge-table tbody");
    const rows = topology.edges.map(function (e) {
      return el("tr", { dataset: { source: e.source, destination: e.destination } },
        el("td", null, e.source), el("td", null, e.destination),
        el("td", { class: "num" }, e.rps.toFixed(2)),
        el("td", { class: "num" + (e.error_rate >= 0.01 ? " bad" : "") }, Mesh.percent(e.error_rate)),
        el("td", { class: "num" }, Mesh.ms(e.p50_ms)),
        el("td", { class: "num" }, Mesh.ms(e.p95_ms)),
        el("td", { class: "num" }, Mesh.ms(e.p99_ms)));
    });
    body.replaceChildren.apply(body, rows.length ? rows : [
      el("tr", { class: "empty-row" }, el("td", { colspan: 7 },
        "No traffic in the last " + topology.window_seconds + " s."))]);
  }

  function render(topology) {
    window.meshTopology = topology;
    renderGraph(topology);
    renderList(topology);
    renderEdges(topology);
    const meta = document.getElementById("topology-meta");
    meta.textContent = "Traffic over the last " + topology.window_seconds + " s · updated " +
      Mesh.clock(topology.generated_at);
    document.dispatchEvent(new CustomEvent("mesh:topology", { detail: topology }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    // The first picture comes from the API after the page (the HTML does not
    // embed it); a websocket push that arrives first wins.
    let pushed = false;
    Mesh.live().on("topology", function (message) { pushed = true; render(message.data); }).subscribe({ topic: "topology" });
    Mesh.api("/api/v1/topology/?window=60s").then(function (topology) {
      if (!pushed) render(topology);
    }, function (error) {
      document.getElementById("topology-meta").textContent = "Topology unavailable: " + error.message;
    });
  });
})();
