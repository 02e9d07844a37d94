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
    const callersOf = {};
    for (const e of calls) (callersOf[e.destination] = callersOf[e.destination] || []).push(e.source);
    let tallest = 0;
    layers.forEach(function (layer, x) {
      if (!layer) return;
      if (x > 0) {
        const means = {};
        for (const name of layer) {
          const ys = (callersOf[name] || []).filter(function (c) { return pos[c]; })
            .map(function (c) { return pos[c].y; });
          means[name] = ys.length ? ys.reduce(function (a, b) { return a + b; }, 0) / ys.length : 0;
        }
        layer.sort(function (a, b) { return means[b] - means[a] || a.localeCompare(b); });
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

  // Past this many nodes or edges the graph is drawn lean: edges in one trace
  // per colour, no arrowheads or labels (hover still tells), idle services left
  // out; search, focus or grouping by tag bring the detail back.
  const LARGE_NODES = 60;
  const LARGE_EDGES = 120;

  /* What the graph shows of TOPOLOGY under the controls: search (names that
     contain it, and their neighbours), focus (one service and its neighbours),
     group (services collapsed by the value of a tag key, e.g. team=...). */
  function view(topology, controls) {
    let nodes = topology.nodes.slice();
    let edges = topology.edges.slice();
    const known = new Set(nodes.map(function (n) { return n.name; }));
    // Callers that are not registered services (e.g. "unknown") still get a node.
    for (const e of edges) {
      for (const name of [e.source, e.destination]) {
        if (!known.has(name)) {
          known.add(name);
          nodes.push({ name: name, passing: 0, total: 0, health: "empty", external: true });
        }
      }
    }
    const total = nodes.length;
    const term = (controls.search || "").trim().toLowerCase();
    const centre = controls.focus && known.has(controls.focus) ? controls.focus : "";
    if (centre || term) {
      const hit = new Set(nodes.filter(function (n) {
        return centre ? n.name === centre : n.name.toLowerCase().indexOf(term) >= 0;
      }).map(function (n) { return n.name; }));
      const keep = new Set(hit);
      for (const e of edges) {
        if (hit.has(e.source)) keep.add(e.destination);
        if (hit.has(e.destination)) keep.add(e.source);
      }
      nodes = nodes.filter(function (n) { return keep.has(n.name); });
      edges = edges.filter(function (e) {
        return keep.has(e.source) && keep.has(e.destination) && (hit.has(e.source) || hit.has(e.destination));
      });
    }
    if (controls.group) {
      const grouped = groupNodes(nodes, controls.group);
      nodes = grouped.nodes;
      edges = groupEdges(edges, grouped.member);
    }
    let idle = 0;
    const large = nodes.length > LARGE_NODES || edges.length > LARGE_EDGES;
    if (large) {
      const linked = new Set();
      for (const e of edges) { linked.add(e.source); linked.add(e.destination); }
      const busy = nodes.filter(function (n) { return linked.has(n.name); });
      idle = nodes.length - busy.length;
      if (busy.length) nodes = busy;
    }
    nodes.sort(function (a, b) { return a.name.localeCompare(b.name); });
    return { nodes: nodes, edges: edges, total: total, idle: idle, large: large };
  }

  const RANK = ["passing", "empty", "disabled", "draining", "maintenance", "warning", "failover", "critical"];

  /* Services carrying KEY=value collapse into one node "KEY=value"; the rest stay. */
  function groupNodes(nodes, key) {
    const prefix = key + "=";
    const groups = {};
    const out = [];
    for (const n of nodes) {
      const tag = (n.tags || []).find(function (t) { return t.indexOf(prefix) === 0; });
      if (!tag) { out.push(n); continue; }
      const g = groups[tag] || (groups[tag] = { name: tag, passing: 0, total: 0, health: "passing",
        state: "passing", members: [], group: true, protocol: "group" });
      g.members.push(n.name);
      g.passing += n.passing; g.total += n.total;
      if (RANK.indexOf(state(n)) > RANK.indexOf(g.state)) g.state = g.health = state(n);
    }
    const member = {};
    for (const tag of Object.keys(groups)) for (const m of groups[tag].members) member[m] = tag;
    return { nodes: out.concat(Object.keys(groups).map(function (t) { return groups[t]; })), member: member };
  }

  /* Edges between groups: rps and requests summed, error rate and latency as
     the busiest edge's (a group's p99 is not a sum). */
  function groupEdges(edges, member) {
    const merged = {};
    for (const e of edges) {
      const source = member[e.source] || e.source;
      const destination = member[e.destination] || e.destination;
      const key = source + ">" + destination;
      const m = merged[key];
      if (!m) { merged[key] = Object.assign({}, e, { source: source, destination: destination }); continue; }
      m.requests += e.requests; m.errors += e.errors; m.rps += e.rps;
      m.error_rate = m.requests ? m.errors / m.requests : 0;
      if (e.p99_ms > m.p99_ms) { m.p50_ms = e.p50_ms; m.p95_ms = e.p95_ms; m.p99_ms = e.p99_ms; }
    }
    return Object.keys(merged).map(function (k) { return merged[k]; });
  }

  function edgeHoverText(e) {
    return "<b>" + e.source + " → " + e.destination + "</b><br>" + e.rps.toFixed(2) + " rps, " +
      Mesh.percent(e.error_rate) + " errors (" + e.errors + "/" + e.requests + ")<br>p50 " +
      Mesh.ms(e.p50_ms) + " · p95 " + Mesh.ms(e.p95_ms) + " · p99 " + Mesh.ms(e.p99_ms);
  }

  /* Edge labels must not sit on one another: try a few points along the edge,
     keep the first that is clear of every label placed so far (else hover only). */
  function placeLabel(path, placed) {
    for (const t of [0.5, 0.38, 0.62, 0.28, 0.72]) {
      const p = path.at(t);
      if (placed.every(function (q) { return Math.abs(q.x - p.x) > 0.42 || Math.abs(q.y - p.y) > 0.16; })) {
        placed.push(p);
        return p;
      }
    }
    return null;
  }

  function figure(v) {
    const nodes = v.nodes;
    const pos = layout(nodes, v.edges);
    const pairs = new Set(v.edges.map(function (e) { return e.source + ">" + e.destination; }));
    const points = nodes.map(function (n) { return pos[n.name]; });
    const annotations = [];
    const placed = [];
    const lines = [];
    const lean = {};  // colour -> one trace of every edge in it (large graphs)
    const mid = { x: [], y: [], text: [] };
    for (const e of v.edges) {
      const a = pos[e.source];
      const b = pos[e.destination];
      if (!a || !b) continue;
      const label = e.rps.toFixed(e.rps < 10 ? 2 : 0) + " rps · " + Mesh.percent(e.error_rate) + " err";
      const hover = edgeHoverText(e);
      const color = edgeColor(e);
      if (e.source === e.destination) {
        if (!v.large) {
          annotations.push({ x: a.x, y: a.y + 0.28, text: "↻ " + label, showarrow: false,
            font: { size: 11, color: MUTED }, hovertext: hover });
        }
        continue;
      }
      if (v.large) {
        const t = lean[color] || (lean[color] = { type: "scatter", mode: "lines", x: [], y: [], hoverinfo: "skip",
          line: { color: color, width: 1 }, opacity: 0.55 });
        t.x.push(a.x, b.x, null); t.y.push(a.y, b.y, null);
        mid.x.push((a.x + b.x) / 2); mid.y.push((a.y + b.y) / 2); mid.text.push(hover);
        continue;
      }
      // Bend an edge when it would hide another (calls both ways, or a node in its path).
      let bend = 0;
      if (pairs.has(e.destination + ">" + e.source)) bend = 0.12;
      if (blocked(a, b, points)) bend = 0.3;
      const path = curve(a, b, bend);
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
      const m = placeLabel(path, placed) || path.at(0.5);
      if (placed.indexOf(m) >= 0) {
        annotations.push({
          x: m.x, y: m.y, text: label, showarrow: false,
          font: { size: 11, color: e.error_rate >= 0.01 ? color : INK },
          bgcolor: "rgba(22,27,34,0.9)", borderpad: 2,
        });
      }
      mid.x.push(m.x); mid.y.push(m.y); mid.text.push(hover);
    }
    const xs = nodes.map(function (n) { return pos[n.name].x; });
    const ys = nodes.map(function (n) { return pos[n.name].y; });
    const nodeTrace = {
      type: "scatter", mode: v.large && nodes.length > 150 ? "markers" : "markers+text", x: xs, y: ys,
      text: nodes.map(function (n) {
        if (v.large) return n.name;
        return "<b>" + n.name + "</b> " + n.passing + "/" + n.total + (n.failover ? " → " + n.failover : "");
      }),
      textposition: "bottom center",
      textfont: { color: INK, size: v.large ? 10 : 12 },
      customdata: nodes.map(function (n) { return n.external || n.group ? "" : n.name; }),
      hovertext: nodes.map(function (n) {
        if (n.group) return "<b>" + n.name + "</b><br>" + n.members.length + " services: " + n.members.slice(0, 12).join(", ") +
          (n.members.length > 12 ? "…" : "") + "<br>" + n.passing + " of " + n.total + " instances routable";
        return "<b>" + n.name + "</b><br>" + (n.external ? "not a registered service" :
          n.protocol + " · " + n.passing + " of " + n.total + " instances routable" +
          Object.keys(n.held || {}).map(function (k) { return "<br>" + n.held[k] + " in " + k; }).join("") +
          (n.failover ? "<br>failed over to <b>" + n.failover + "</b>" : ""));
      }),
      hoverinfo: "text",
      marker: {
        size: v.large ? 12 : 30,
        color: nodes.map(function (n) { return COLORS[state(n)] || COLORS.empty; }),
        line: { color: "#0d1117", width: v.large ? 1 : 3 },
        symbol: nodes.map(function (n) { return n.group ? "square" : n.external ? "diamond" : "circle"; }),
      },
    };
    const edgeHover = {
      type: "scatter", mode: "markers", x: mid.x, y: mid.y, hovertext: mid.text, hoverinfo: "text",
      marker: { size: v.large ? 10 : 26, color: "rgba(0,0,0,0)" },
    };
    const pad = 0.6;
    const axis = function (values, extra) {
      let lo = 0, hi = 1;
      for (let i = 0; i < values.length; i++) {
        if (i === 0 || values[i] < lo) lo = values[i];
        if (i === 0 || values[i] > hi) hi = values[i];
      }
      return { visible: false, range: [lo - pad - extra, hi + pad], fixedrange: false, zeroline: false };
    };
    const yAxis = axis(ys, 0.3);
    const rows = yAxis.range[1] - yAxis.range[0];
    return {
      data: lines.concat(Object.keys(lean).map(function (c) { return lean[c]; }), [edgeHover, nodeTrace]),
      layout: {
        annotations: annotations,
        xaxis: axis(xs, 0),
        yaxis: yAxis,
        showlegend: false,
        hovermode: "closest",
        dragmode: "pan",
        hoverlabel: { bgcolor: "#161b22", bordercolor: "#30363d", font: { color: INK } },
        margin: { l: 10, r: 10, t: 10, b: 10 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        // Tall enough for the rows drawn, no more.
        height: Math.max(300, Math.min(v.large ? 900 : 680, 200 + (rows - 1.5) * (v.large ? 30 : 110))),
        uirevision: "topology",
      },
    };
  }

  const controls = { search: "", focus: "", group: "" };

  function renderGraph(topology) {
    const target = document.getElementById("topology-graph");
    const started = performance.now();
    if (!topology.nodes.length && !topology.edges.length) {
      Plotly.purge(target);
      target.replaceChildren(el("p", { class: "graph-empty" },
        "No services yet. Register one through the API or start an agent."));
      return;
    }
    if (target.querySelector(".graph-empty")) target.replaceChildren();
    const v = view(topology, controls);
    const fig = figure(v);
    const note = document.getElementById("graph-note");
    if (note) {
      note.textContent = "Showing " + v.nodes.length + " of " + v.total + " services, " + v.edges.length + " edges" +
        (v.idle ? " (" + v.idle + " without traffic not drawn)" : "") +
        (v.large ? " · large graph: labels on hover; search, focus or group for detail" : "");
      note.dataset.shown = v.nodes.length;
      note.dataset.large = v.large ? "1" : "0";
    }
    Plotly.react(target, fig.data, fig.layout, {
      displayModeBar: true, displaylogo: false, responsive: true, scrollZoom: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage", "autoScale2d"],
    }).then(function () {
      target.dataset.renderMs = String(Math.round(performance.now() - started));
      // Navigation start -> the first picture drawn (bench/console_graph_bench.py).
      if (!target.dataset.firstPictureMs) target.dataset.firstPictureMs = String(Math.round(performance.now()));
      target.dataset.rendered = String((Number(target.dataset.rendered) || 0) + 1);
    });
    if (!target.dataset.bound) {
      target.dataset.bound = "1";
      target.on("plotly_click", function (event) {
        const name = event.points && event.points[0] && event.points[0].customdata;
        if (!name) return;
        // Alt/shift-click focuses the graph on the service; a click opens it.
        if (event.event && (event.event.altKey || event.event.shiftKey)) setFocus(name);
        else location.href = "/services/" + encodeURIComponent(name) + "/";
      });
    }
  }

  function setFocus(name) {
    controls.focus = name;
    const select = document.getElementById("graph-focus");
    if (select) select.value = name;
    if (window.meshTopology) renderGraph(window.meshTopology);
  }

  /* The focus list and the tag keys follow the services the topology has. */
  function renderControls(topology) {
    const focus = document.getElementById("graph-focus");
    const group = document.getElementById("graph-group");
    if (!focus || !group) return;
    const names = topology.nodes.map(function (n) { return n.name; }).sort();
    if (focus.dataset.names !== names.join(",")) {
      focus.dataset.names = names.join(",");
      focus.replaceChildren.apply(focus, [el("option", { value: "" }, "everything")].concat(
        names.map(function (n) { return el("option", { value: n }, n); })));
      focus.value = names.indexOf(controls.focus) >= 0 ? controls.focus : "";
    }
    const keys = new Set();
    for (const n of topology.nodes) for (const t of n.tags || []) if (t.indexOf("=") > 0) keys.add(t.split("=")[0]);
    const sorted = Array.from(keys).sort();
    if (group.dataset.keys !== sorted.join(",")) {
      group.dataset.keys = sorted.join(",");
      group.replaceChildren.apply(group, [el("option", { value: "" }, "no grouping")].concat(
        sorted.map(function (k) { return el("option", { value: k }, "by " + k + "="); })));
      group.value = sorted.indexOf(controls.group) >= 0 ? controls.group : "";
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
    function figures(f) {
      return [
        el("td", { class: "num" }, f.rps.toFixed(2)),
        el("td", { class: "num" + (f.error_rate >= 0.01 ? " bad" : "") }, Mesh.percent(f.error_rate)),
        el("td", { class: "num" }, Mesh.ms(f.p50_ms)),
        el("td", { class: "num" }, Mesh.ms(f.p95_ms)),
        el("td", { class: "num" }, Mesh.ms(f.p99_ms))];
    }
    const rows = [];
    topology.edges.forEach(function (e) {
      rows.push(el("tr", { dataset: { source: e.source, destination: e.destination } },
        el("td", null, e.source), el("td", null, e.destination), figures(e)));
      // Route subsets (a canary's v2 against v1): one muted row each under the edge.
      Object.keys(e.subsets || {}).forEach(function (name) {
        rows.push(el("tr", { class: "subset-row muted", dataset: { edge: e.source + ">" + e.destination, subset: name } },
          el("td", null, ""), el("td", null, "↳ subset " + name), figures(e.subsets[name])));
      });
    });
    body.replaceChildren.apply(body, rows.length ? rows : [
      el("tr", { class: "empty-row" }, el("td", { colspan: 7 },
        "No traffic in the last " + topology.window_seconds + " s."))]);
  }

  // While the time slider shows the past, live pushes are kept, not drawn.
  let replaying = false;
  let latest = null;
  Mesh.topology = {
    replay: function (topology) { replaying = true; render(topology, true); },
    live: function () { replaying = false; if (latest) render(latest); },
  };

  let drawn = null;  // what the graph and tables show, as JSON

  function render(topology, past) {
    if (!past) latest = topology;
    if (replaying && !past) return;
    window.meshTopology = topology;
    // The websocket's first push usually repeats the API's answer: drawing a
    // large mesh twice cost as much again (only the "updated" time changes).
    const shown = JSON.stringify([topology.nodes, topology.edges]);
    if (shown !== drawn) {
      drawn = shown;
      renderControls(topology);
      renderGraph(topology);
      renderList(topology);
      renderEdges(topology);
    }
    const meta = document.getElementById("topology-meta");
    meta.textContent = (past ? "Replaying " : "Traffic over the last ") + topology.window_seconds + " s" +
      (past ? " up to " : " · updated ") + Mesh.clock(topology.generated_at);
    document.dispatchEvent(new CustomEvent("mesh:topology", { detail: topology }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    let typing = null;
    document.getElementById("graph-search").addEventListener("input", function (event) {
      controls.search = event.target.value;
      clearTimeout(typing);  // redraw once typing pauses, not per key
      typing = setTimeout(function () { if (window.meshTopology) renderGraph(window.meshTopology); }, 150);
    });
    document.getElementById("graph-focus").addEventListener("change", function (event) { setFocus(event.target.value); });
    document.getElementById("graph-group").addEventListener("change", function (event) {
      controls.group = event.target.value;
      if (window.meshTopology) renderGraph(window.meshTopology);
    });
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
