/* Service page: golden metrics per instance (issue 13). The instances table's
   rps / error % / p99 columns (the last minute, GET services/{name}/metrics/instances/)
   and the chart's instance selector (service.js reads Mesh.instanceMetrics.chartPath). */
(function () {
  "use strict";
  const el = Mesh.el;
  const PERIOD_MS = 10000;
  let figures = {}; // instance id -> {requests, rps, error_rate, p50_ms, p95_ms, p99_ms}
  let loaded = false;

  function number(value, digits) {
    return value === null || value === undefined ? "—" : value.toFixed(digits);
  }

  Mesh.instanceMetrics = {
    /* The three cells of an instance's row. */
    cells: function (id) {
      const f = figures[id];
      const none = !loaded ? "…" : "—";
      const cell = function (name, text) {
        return el("td", { class: "num", dataset: { figure: name, instance: id } }, text);
      };
      if (!f || !f.requests) return [cell("rps", loaded ? "0" : none), cell("error", none), cell("p99", none)];
      return [cell("rps", number(f.rps, 2)), cell("error", number(f.error_rate * 100, 1) + "%"),
        cell("p99", number(f.p99_ms, 1) + " ms")];
    },
    /* The chart's series: the whole service (null) or the selected instance's path. */
    chartPath: function () {
      const select = document.getElementById("chart-instance");
      return select && select.value ? "instances/" + encodeURIComponent(select.value) + "/metrics/" : null;
    },
    /* Keep the selector's options in step with the service's instances. */
    sync: function (instances) {
      const select = document.getElementById("chart-instance");
      if (!select) return;
      const chosen = select.value;
      const options = [el("option", { value: "" }, "whole service")].concat(instances.map(function (i) {
        return el("option", { value: i.id }, i.address + ":" + i.port);
      }));
      const same = select.options.length === options.length && options.every(function (o, n) {
        return select.options[n].value === o.value && select.options[n].textContent === o.textContent;
      });
      if (same) return;
      select.replaceChildren.apply(select, options);
      select.value = instances.some(function (i) { return i.id === chosen; }) ? chosen : "";
    },
  };

  async function load(name, rerender) {
    try {
      const data = await Mesh.api("/api/v1/services/" + encodeURIComponent(name) + "/metrics/instances/?window=60s");
      figures = {};
      data.instances.forEach(function (f) { figures[f.instance] = f; });
      loaded = true;
    } catch (e) {
      figures = {};
    }
    rerender();
  }

  Mesh.instanceMetrics.start = function (name, rerender) {
    load(name, rerender);
    setInterval(function () { if (!document.hidden) load(name, rerender); }, PERIOD_MS);
  };
})();
