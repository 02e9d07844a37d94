"""The overview graph at size (issue 13): how long the console takes to draw a
mesh of N services and E edges in headless Chromium.

    python bench/console_graph_bench.py [--sizes 50x100,500x2000] [--runs 3]

A real control plane on loopback (tests/e2e/controlplane.py, web only, SQLite,
the Redis of REDIS_URL, default redis://127.0.0.1:6379/14), N services and E edges bulk-created (one 10 s window per
edge), a logged-in Debian Chromium page. Per size it prints the median over
--runs page loads of:

- render: overview.js's own figure (data-render-ms: layout, traces,
  Plotly.react) for the first picture;
- page: navigation start -> the first picture drawn (HTML, scripts, the
  topology API, render): data-first-picture-ms, stamped by overview.js when the
  first Plotly.react settles (it was the time Playwright next got to evaluate,
  which counted whatever the page did after);
- steps: when the HTML, each script and each API answer had arrived, and
  DOMContentLoaded (navigation and resource timing);
- topology API alone (the server side of it).

Target (issue 13): 500 services / 2,000 edges drawn in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import save_results, verdict  # noqa: E402
from tests.e2e.controlplane import control_plane  # noqa: E402

USER, PASSWORD = "graph-bench", "graph-bench-password-1"

SEED = """
import random
from django.contrib.auth.models import User
from django.utils import timezone
from monitoring.models import EdgeWindow
from registry.models import Service
if not User.objects.filter(username={user!r}).exists():
    User.objects.create_superuser({user!r}, "g@example.com", {password!r})
EdgeWindow.objects.all().delete()
Service.objects.all().delete()
rng = random.Random(7)
Service.objects.bulk_create(
    [Service(name=f"svc-{{i:04d}}", tags=[f"team=t{{i % 20}}"]) for i in range({services})])
pairs = set()
while len(pairs) < {edges}:
    a, b = rng.randrange({services}), rng.randrange({services})
    if a != b:
        pairs.add((min(a, b), max(a, b)))
now = timezone.now()
EdgeWindow.objects.bulk_create([
    EdgeWindow(window_end=now, seconds=10, node="host-a", source=f"svc-{{a:04d}}",
               destination=f"svc-{{b:04d}}", requests=rng.randrange(10, 5000),
               errors=rng.randrange(0, 10), latency_sum_ms=1000)
    for a, b in sorted(pairs)])
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50x100,500x2000", help="SERVICESxEDGES,...")
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


# Navigation and resource timing: when the HTML arrived, when the scripts had run
# (DOMContentLoaded), when each API answer the page fetched had arrived.
STEPS_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const out = {html: nav.responseEnd, dom_content_loaded: nav.domContentLoadedEventEnd};
  for (const r of performance.getEntriesByType("resource")) {
    const m = r.name.match(/\\/api\\/v1\\/([a-z-]+)/) || r.name.match(/([a-z.]+\\.js)$/);
    if (m) out[m[1]] = Math.max(out[m[1]] || 0, r.responseEnd);
  }
  return out;
}"""


def one_size(cp: Any, browser: Any, services: int, edges: int, runs: int) -> dict[str, Any]:
    cp.manage("shell", "-c", SEED.format(user=USER, password=PASSWORD, services=services,
                                          edges=edges))
    api_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        request = urllib.request.Request(f"{cp.url}/api/v1/topology/?window=60s",
                                         headers={"Authorization": f"Token {cp.token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        api_ms.append((time.perf_counter() - start) * 1000)
    context = browser.new_context(base_url=cp.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/login/")
    page.fill("#id_username", USER)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    render_ms, page_ms = [], []
    steps: list[dict[str, float]] = []
    for _ in range(runs):
        page.goto("/")
        page.wait_for_selector("#topology-graph[data-render-ms]", timeout=120_000)
        render_ms.append(float(page.get_attribute("#topology-graph", "data-render-ms") or 0))
        page.wait_for_selector("#topology-graph[data-first-picture-ms]", timeout=120_000)
        page_ms.append(float(page.get_attribute("#topology-graph", "data-first-picture-ms") or 0))
        steps.append(page.evaluate(STEPS_JS))
    context.close()
    return {
        "services": services, "edges": edges,
        "render_ms": statistics.median(render_ms),
        "page_ms": statistics.median(page_ms),
        "topology_api_ms": statistics.median(api_ms),
        # Where the page's time goes (ms since navigation start, medians).
        "steps": {k: statistics.median(st[k] for st in steps) for k in steps[0]},
        "page_errors": errors,
    }


def main() -> None:
    args = parse_args()
    from playwright.sync_api import sync_playwright

    # The control plane's Redis: REDIS_URL, else the local one (db 14).
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        control_plane(Path(tmp), workers=False) as cp,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        for size in args.sizes.split(","):
            services, edges = (int(x) for x in size.split("x"))
            result = one_size(cp, browser, services, edges, args.runs)
            results.append(result)
            print(f"{services:5d} services {edges:5d} edges: render {result['render_ms']:7.0f} ms"
                  f"  page {result['page_ms']:7.0f} ms  topology API "
                  f"{result['topology_api_ms']:6.0f} ms  page errors {len(result['page_errors'])}")
            print("      steps (ms since navigation start): " + ", ".join(
                f"{k} {v:.0f}" for k, v in sorted(result["steps"].items(), key=lambda kv: kv[1])))
        browser.close()
    for r in results:
        if (r["services"], r["edges"]) == (500, 2000):
            print(f"target: 500 services / 2,000 edges drawn < 1 s: render {r['render_ms']:.0f} ms "
                  f"{verdict(r['render_ms'] < 1000)}; whole page {r['page_ms']:.0f} ms "
                  f"{verdict(r['page_ms'] < 1000)}")
    print(f"saved {save_results('console_graph', {'results': results})}")


if __name__ == "__main__":
    main()
