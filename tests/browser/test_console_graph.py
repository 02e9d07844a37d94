"""The overview with a large mesh: drawn lean (no label per edge), and the
filter-first controls — search, focus on a service and its neighbours, group by
a tag key — each redraw what they say. (Render time is measured in
bench/console_graph_bench.py, not asserted here.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SERVICES, EDGES = 150, 450

SEED = f"""
import random
from django.utils import timezone
from monitoring.models import EdgeWindow
from registry.models import Service
rng = random.Random(7)
Service.objects.bulk_create(
    [Service(name=f"big-{{i:03d}}", tags=[f"team=t{{i % 5}}"]) for i in range({SERVICES})])
pairs = set()
while len(pairs) < {EDGES}:
    a, b = rng.randrange({SERVICES}), rng.randrange({SERVICES})
    if a < b:
        pairs.add((a, b))
now = timezone.now()
EdgeWindow.objects.bulk_create([
    EdgeWindow(window_end=now, seconds=10, node="host-a", source=f"big-{{a:03d}}",
               destination=f"big-{{b:03d}}", requests=100, errors=0, latency_sum_ms=500)
    for a, b in sorted(pairs)])
"""

NOTE = "#graph-note"


def shown(page: Any) -> int:
    return int(page.get_attribute(NOTE, "data-shown"))


def redrawn(page: Any, before: str | None) -> None:
    page.wait_for_function(
        "b => document.getElementById('topology-graph').dataset.rendered !== b", arg=before)


def test_a_large_mesh_is_drawn_lean_and_filtered_first(page: Any, console_server: ConsoleServer) -> None:
    console_server.manage("shell", "-c", SEED)
    log_in(page)
    page.goto("/")
    page.wait_for_selector(f"{NOTE}[data-large='1']", timeout=30_000)
    page.wait_for_selector("#topology-graph[data-rendered]")
    total = len(console_server.api("GET", "/api/v1/topology/?window=60s")["nodes"])
    assert f"of {total} services" in page.inner_text(NOTE)
    # Lean: edges in a few traces, no annotation per edge (labels would pile up).
    traces, annotations = page.evaluate(
        "() => { const g = document.getElementById('topology-graph');"
        " return [g.data.length, (g.layout.annotations || []).length]; }")
    assert traces <= 6 and annotations == 0

    rendered = page.get_attribute("#topology-graph", "data-rendered")
    page.fill("#graph-search", "big-007")
    redrawn(page, rendered)
    neighbours = {e["destination"] for e in console_server.api("GET", "/api/v1/topology/")["edges"]
                  if e["source"] == "big-007"} | {
        e["source"] for e in console_server.api("GET", "/api/v1/topology/")["edges"]
        if e["destination"] == "big-007"}
    assert shown(page) == len(neighbours | {"big-007"})
    names = page.evaluate(
        "() => document.getElementById('topology-graph').data.find(t => t.mode && t.mode.startsWith('markers') && t.customdata).customdata")
    assert set(names) == neighbours | {"big-007"}

    rendered = page.get_attribute("#topology-graph", "data-rendered")
    page.fill("#graph-search", "")
    page.select_option("#graph-focus", "big-010")
    redrawn(page, rendered)
    assert "big-010" in page.evaluate(
        "() => document.getElementById('topology-graph').data.slice(-1)[0].customdata")

    rendered = page.get_attribute("#topology-graph", "data-rendered")
    page.select_option("#graph-focus", "")
    page.select_option("#graph-group", "team")
    redrawn(page, rendered)
    groups = page.evaluate(
        "() => document.getElementById('topology-graph').data.slice(-1)[0].text")
    # Every big-* service carries a team tag: five group nodes stand for them.
    labels = [g.split("</b>")[0].removeprefix("<b>") for g in groups]
    assert sorted(x for x in labels if x.startswith("team=")) == [f"team=t{i}" for i in range(5)]
    assert not [x for x in labels if x.startswith("big-")]
