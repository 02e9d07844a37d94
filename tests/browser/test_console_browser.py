"""The console in headless Chromium against a real server: log in, watch the
topology update live, flip an instance into maintenance."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import PASSWORD, USERNAME, ConsoleServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SCREENSHOT = "/tmp/console-overview.png"


def log_in(page: Any) -> None:
    page.goto("/services/")
    assert "/login/" in page.url
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/services/")


def test_wrong_password_stays_on_login(page: Any) -> None:
    page.goto("/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator(".alert").is_visible()
    assert "/login/" in page.url


def test_new_service_appears_on_overview_without_reload(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/")
    page.wait_for_function("window.meshTopology && window.meshTopology.nodes.length >= 3")
    page.wait_for_selector("#live-state[data-state=live]")
    # Drawn: nodes and the seeded edges, with their rates in the table.
    page.wait_for_selector("#topology-graph .main-svg")
    assert page.locator('#edge-table tr[data-source="web"][data-destination="orders"]').count() == 1
    # The seeded orders -> payments windows went to route subsets v1 and v2: a row each.
    subsets = page.locator('#edge-table tr.subset-row[data-edge="orders>payments"]')
    assert subsets.count() == 2
    assert "subset v1" in subsets.nth(0).inner_text() and "subset v2" in subsets.nth(1).inner_text()
    assert page.locator('#edge-table tr.subset-row[data-edge="web>orders"]').count() == 0
    page.evaluate("window.__sameDocument = true")

    console_server.api("POST", "/api/v1/services/", {"name": "browser-svc"})

    page.wait_for_selector('#topology-services li[data-service="browser-svc"]', timeout=10_000)
    names = page.evaluate("window.meshTopology.nodes.map(n => n.name)")
    assert "browser-svc" in names
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert page.locator('li[data-service="browser-svc"]').get_attribute("data-health") == "empty"
    page.screenshot(path=SCREENSHOT, full_page=True)
    assert page.errors == []


def test_maintenance_toggle_goes_through_the_api(page: Any, console_server: ConsoleServer) -> None:
    console_server.api(
        "POST", "/api/v1/services/", {"name": "browser-maint", "check": {"type": "none"}}
    )
    instance = console_server.api(
        "POST",
        "/api/v1/services/browser-maint/instances/",
        {"address": "127.0.0.1", "port": 9100, "zone": "zone-1"},
    )
    url = f"/api/v1/services/browser-maint/instances/{instance['id']}/"
    assert instance["status"] == "passing"
    log_in(page)
    page.goto("/services/browser-maint/")
    row = f'#instance-table tr[data-instance="{instance["id"]}"]'
    page.wait_for_selector(f'{row}[data-status="passing"]')
    page.wait_for_selector("#live-state[data-state=live]")

    # The only instance in rotation: the console asks first; Escape changes nothing.
    page.click(f'{row} input[data-instance="{instance["id"]}"]')
    page.wait_for_selector("dialog[open] [data-out-of-rotation]")
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    page.wait_for_selector(f'{row} input[data-instance="{instance["id"]}"]:not(:checked)')
    assert console_server.api("GET", url)["status"] == "passing"
    page.click(f'{row} input[data-instance="{instance["id"]}"]')
    page.click("dialog[open] button[data-confirm]")
    page.wait_for_selector(f'{row}[data-status="maintenance"]', timeout=10_000)
    assert console_server.api("GET", url)["status"] == "maintenance"
    page.wait_for_selector('#service-events td:has-text("passing -> maintenance")', timeout=10_000)
    page.wait_for_selector("#service-chart .main-svg, #chart-note:not([hidden])")
    page.screenshot(path="/tmp/console-service.png", full_page=True)

    page.click(f'{row} input[data-instance="{instance["id"]}"]')
    page.wait_for_selector(f'{row}[data-status="passing"]', timeout=10_000)
    assert console_server.api("GET", url)["status"] == "passing"
    assert page.errors == []


def test_instance_changed_elsewhere_updates_the_service_page(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/services/web/")
    page.wait_for_selector("#live-state[data-state=live]")
    instance = console_server.api("GET", "/api/v1/services/web/instances/")["results"][0]
    row = f'#instance-table tr[data-instance="{instance["id"]}"]'
    console_server.api(
        "PATCH", f"/api/v1/services/web/instances/{instance['id']}/", {"maintenance": True}
    )
    page.wait_for_selector(f'{row}[data-status="maintenance"]', timeout=10_000)
    assert page.locator(f"{row} input[type=checkbox]").is_checked()
    console_server.api(
        "PATCH", f"/api/v1/services/web/instances/{instance['id']}/", {"maintenance": False}
    )
    page.wait_for_selector(f'{row}[data-status="passing"]', timeout=10_000)


@pytest.mark.parametrize(
    ("path", "table"),
    [("/services/", "service-table"), ("/agents/", "agent-table"), ("/events/", "event-table")],
)
def test_list_pages_render(page: Any, path: str, table: str) -> None:
    log_in(page)
    page.goto(path)
    # The page's list (the agents page also has the staff's enrollment tokens).
    assert page.locator(f"table.table#{table}").count() == 1
    assert page.locator('.nav a[aria-current="page"]').count() == 1
    assert page.errors == []


def test_services_search_filters_as_you_type(page: Any) -> None:
    log_in(page)
    page.goto("/services/")
    page.fill("#service-search", "pay")
    assert page.locator('#service-table tr[data-service="payments"]').is_visible()
    assert page.locator('#service-table tr[data-service="web"]').is_hidden()


def test_service_page_explains_and_controls_instances(
    page: Any, console_server: ConsoleServer
) -> None:
    console_server.api(
        "POST", "/api/v1/services/", {"name": "browser-ctl", "check": {"type": "none"}}
    )
    made = [
        console_server.api(
            "POST",
            "/api/v1/services/browser-ctl/instances/",
            {"address": "127.0.0.1", "port": port, "tags": tags},
        )
        for port, tags in ((9201, ["v1"]), (9202, ["v1"]), (9203, ["v2"]))
    ]
    first = made[0]["id"]
    row = f'#instance-table tr[data-instance="{first}"]'
    log_in(page)
    page.goto("/services/browser-ctl/")
    page.wait_for_selector("#live-state[data-state=live]")
    reason = page.locator(f'{row} .explanation').inner_text()
    assert reason.startswith("passing since") and reason.endswith("; receives traffic")

    # Per-instance action: drain, with the reason saying what it means.
    page.click(f'{row} button[data-action="drain"]')
    page.wait_for_selector(f'{row}[data-status="draining"]', timeout=10_000)
    assert "receives no new traffic" in page.locator(f"{row} .explanation").inner_text()
    assert console_server.api(
        "GET", f"/api/v1/services/browser-ctl/instances/{first}/")["status"] == "draining"

    # The timeline opens under the row and shows the drain.
    page.click(f'{row} .timeline-toggle')
    page.wait_for_selector(f'tr[data-timeline="{first}"] li[data-kind="admin"]', timeout=10_000)
    assert "passing -> draining" in page.locator(f'tr[data-timeline="{first}"]').inner_text()

    # Weight edit.
    second = made[1]["id"]
    page.fill(f'#instance-table input.weight-input[data-weight-for="{second}"]', "7")
    page.press(f'#instance-table input.weight-input[data-weight-for="{second}"]', "Enter")
    page.wait_for_function(
        "id => (window.meshService.instances.find(i => i.id === id) || {}).weight === 7", arg=second,
        timeout=10_000)

    # Bulk: maintenance on tag v1 (the draining one and the second).
    page.fill("#bulk-form input[name=tags]", "v1")
    page.select_option("#bulk-form select[name=action]", "maintenance")
    page.click("#bulk-form button[type=submit]")
    page.click("dialog[open] button[data-confirm]")  # names the 2 instances first
    page.wait_for_selector("#bulk-result[data-affected='2']", timeout=10_000)
    page.wait_for_selector(f'#instance-table tr[data-instance="{second}"][data-status="maintenance"]',
                           timeout=10_000)
    third = made[2]["id"]
    assert console_server.api(
        "GET", f"/api/v1/services/browser-ctl/instances/{third}/")["status"] == "passing"
    # An empty selector is refused with the API's message.
    page.allowed_statuses.add(400)
    page.fill("#bulk-form input[name=tags]", "")
    page.click("#bulk-form button[type=submit]")
    page.wait_for_selector("#bulk-result:has-text('refused')", timeout=10_000)
    page.screenshot(path="/tmp/console-service-control.png", full_page=True)
    assert page.errors == []


def test_the_service_chart_switches_direction_and_window(page: Any) -> None:
    """The seed has web -> orders (600 requests) and orders -> payments (240)."""
    log_in(page)
    page.goto("/services/orders/")
    page.wait_for_selector("#service-chart[data-direction=in] .main-svg")

    def served() -> float:
        return float(page.evaluate(
            "() => { const c = document.getElementById('service-chart');"
            " return c.data[0].y.reduce((a, b) => a + (b || 0), 0); }"))

    step = 10  # 15 min -> 10 s steps (monitoring.timeseries.choose_step)
    assert served() * step == pytest.approx(600, abs=1)
    page.select_option("#chart-direction", "out")
    page.wait_for_selector("#service-chart[data-direction=out]")
    assert served() * step == pytest.approx(240, abs=1)
    page.select_option("#chart-window", "24h")
    page.wait_for_selector("#service-chart[data-window='86400']")
    assert "rolled up" in page.locator("#chart-step").inner_text()
    assert page.errors == []
