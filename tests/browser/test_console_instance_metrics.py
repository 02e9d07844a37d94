"""The service page's golden metrics per instance: the table's rps / error % / p99
of the last minute, and the chart switched to one instance's series."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# Instance A served 2 x 60 requests (6 errors, all at 40 ms), B 2 x 15 (at 3 ms),
# in windows that ended 5 s and 15 s ago: what the callers' agents reported.
SEED = """
from datetime import timedelta
from django.utils import timezone
from agents.runtime import histogram
from monitoring.models import InstanceWindow
now = timezone.now()
for instance, requests, errors, ms in (({a!r}, 60, 3, 40.0), ({b!r}, 15, 0, 3.0)):
    buckets = histogram.empty()
    buckets[histogram.bucket_index(ms)] = requests
    for age in (5, 15):
        InstanceWindow.objects.create(
            window_end=now - timedelta(seconds=age), seconds=10, node="host-a",
            service="payments", instance=instance, requests=requests, errors=errors,
            latency_sum_ms=requests * ms, buckets=buckets)
"""


def test_the_service_page_shows_each_instance_and_charts_one(
    page: Any, console_server: ConsoleServer
) -> None:
    instances = console_server.api("GET", "/api/v1/services/payments/instances/")["results"]
    a, b = sorted(instances, key=lambda i: i["port"])
    console_server.manage("shell", "-c", SEED.format(a=a["id"], b=b["id"]))
    log_in(page)
    page.goto("/services/payments/")

    def figure(instance: str, name: str) -> str:
        selector = f"#instance-table td[data-figure={name}][data-instance='{instance}']"
        return str(page.locator(selector).inner_text())

    page.wait_for_function(
        "id => { const c = document.querySelector(`td[data-figure=rps][data-instance='${id}']`);"
        " return c && c.textContent === '2.00'; }", arg=a["id"], timeout=30000)
    assert figure(a["id"], "error") == "5.0%"
    p99 = float(figure(a["id"], "p99").removesuffix(" ms"))
    assert 36.2 <= p99 <= 51.2  # 40 ms lies in the bucket (36.2, 51.2]
    assert (figure(b["id"], "rps"), figure(b["id"], "error")) == ("0.50", "0.0%")

    page.wait_for_selector("#service-chart .main-svg")
    page.select_option("#chart-instance", a["id"])
    page.wait_for_selector(f"#service-chart[data-instance='{a['id']}'] .main-svg")
    assert page.locator("#chart-direction").is_disabled()  # an instance's series is "in"

    def served() -> float:
        return float(page.evaluate(
            "() => { const c = document.getElementById('service-chart');"
            " return c.data[0].y.reduce((a, b) => a + (b || 0), 0); }"))

    step = 10  # 15 min -> 10 s steps (monitoring.timeseries.choose_step)
    page.wait_for_function(
        "() => document.getElementById('service-chart').data[0].y.some(v => v > 0)")
    assert served() * step == pytest.approx(120, abs=1)
    page.select_option("#chart-instance", b["id"])
    page.wait_for_selector(f"#service-chart[data-instance='{b['id']}']")
    page.wait_for_function(
        "() => { const y = document.getElementById('service-chart').data[0].y;"
        " return Math.abs(y.reduce((a, b) => a + (b || 0), 0) * 10 - 30) < 1; }")
    page.select_option("#chart-instance", "")
    page.wait_for_selector("#service-chart[data-instance=''] .main-svg")
    assert not page.locator("#chart-direction").is_disabled()
    assert page.errors == []
