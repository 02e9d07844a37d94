"""Every write in the browser, each through the REST API: services (create,
edit, delete with its dependents), the health check editor, the traffic policy
editor (diff, 409, re-apply, rollback), bulk actions confirmed, and operator
states and failover drawn as themselves. Another console sees each change live."""

from __future__ import annotations

import urllib.error
from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CONFIRM = "dialog[open] button[data-confirm]"


def gone(server: ConsoleServer, path: str) -> bool:
    try:
        server.api("GET", path)
    except urllib.error.HTTPError as error:
        return error.code == 404
    return False


def test_service_create_edit_delete_in_the_browser(
    page: Any, other_page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.click("#new-service")
    page.wait_for_selector("#service-create-dialog[open]")
    assert page.evaluate("document.activeElement.name") == "name"
    page.keyboard.press("Escape")  # closes without writing
    page.wait_for_selector("#service-create-dialog:not([open])", state="attached")
    page.click("#new-service")
    page.fill("#create-name", "web")  # taken: the 409 lands on the name field
    page.allowed_statuses.add(409)
    page.press("#create-name", "Enter")
    page.wait_for_selector('.field-error[data-error-for="name"]:has-text("already exists")')
    page.fill("#create-name", "ledger")
    page.fill("#create-description", "the books")
    page.fill("#create-tags", "team-a, beta")
    page.fill("#create-drain", "45s")
    page.press("#create-tags", "Enter")
    page.wait_for_url("**/services/ledger/")
    created = console_server.api("GET", "/api/v1/services/ledger/")
    assert (created["description"], created["tags"], created["drain_timeout"]) == (
        "the books", ["team-a", "beta"], "45s")

    # Another console watches the page while the first edits.
    log_in(other_page)
    other_page.goto("/services/ledger/")
    other_page.wait_for_selector("#live-state[data-state=live]")
    page.wait_for_selector("#live-state[data-state=live]")
    page.click("#edit-service")
    page.wait_for_selector("#service-edit-dialog[open]")
    assert page.input_value("#edit-tags") == "team-a, beta"
    page.fill("#edit-description", "the general ledger")
    page.select_option("#edit-protocol", "tcp")
    page.fill("#edit-drain", "soon")  # not a duration: the error sits at the field
    page.allowed_statuses.add(400)
    page.press("#edit-drain", "Enter")
    page.wait_for_selector('.field-error[data-error-for="drain_timeout"]')
    assert page.locator("#service-edit-dialog").get_attribute("open") is not None
    page.fill("#edit-drain", "2m")
    page.press("#edit-drain", "Enter")
    page.wait_for_selector("#service-edit-dialog:not([open])", state="attached")
    other_page.wait_for_selector('#service-description:has-text("the general ledger")', timeout=10_000)
    assert "tcp" in other_page.locator("#service-facts").inner_text()
    edited = console_server.api("GET", "/api/v1/services/ledger/")
    assert (edited["protocol"], edited["drain_timeout"]) == ("tcp", "2m")

    # Delete names what depends on it: orders calls payments (seeded traffic),
    # web fails over to it.
    console_server.api("PATCH", "/api/v1/services/web/policy/", {"failover": {"targets": ["payments"]}})
    page.goto("/services/payments/")
    page.click("#delete-service")
    dialog = page.locator("dialog[open]")
    dialog.locator('[data-deps="callers"] code:has-text("orders")').wait_for()
    assert dialog.locator('[data-deps="failover"] code').all_inner_texts() == ["web"]
    assert "2 instance(s)" in dialog.inner_text()
    page.screenshot(path="/tmp/console-delete.png")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"  # destructive: Cancel first
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    assert console_server.api("GET", "/api/v1/services/payments/")["name"] == "payments"
    # While web fails over to it, the delete is refused and the page says why.
    page.allowed_statuses.add(409)
    page.click("#delete-service")
    page.click(CONFIRM)
    page.wait_for_selector('#service-error:not([hidden]):has-text("web fails over to payments")')
    assert console_server.api("GET", "/api/v1/services/payments/")["name"] == "payments"
    console_server.api("PATCH", "/api/v1/services/web/policy/", {"failover": {"targets": []}})
    page.click("#delete-service")
    page.click(CONFIRM)
    page.wait_for_url("**/services/")
    assert gone(console_server, "/api/v1/services/payments/")


def test_health_check_editor_shows_errors_at_the_field(
    page: Any, console_server: ConsoleServer
) -> None:
    console_server.api("POST", "/api/v1/services/", {"name": "checked", "check": {"type": "tcp"}})
    log_in(page)
    page.goto("/services/checked/")
    page.click("#edit-check")
    page.wait_for_selector("#check-dialog[open]")
    assert page.locator("#check-path").is_hidden()  # tcp: no HTTP fields
    page.select_option("#check-type", "http")
    assert page.locator("#check-path").is_visible()
    page.fill("#check-path", "/ready")
    page.fill("#check-interval", "5s")
    page.fill("#check-timeout", "10s")  # longer than the interval: the API refuses
    page.fill("#check-rise", "3")
    page.fill("#check-fall", "0")  # below the minimum
    page.fill("#check-expect", "200-204")
    page.fill("#check-body", "ok")
    page.fill("#check-headers", "Host: checked.internal")
    page.allowed_statuses.add(400)
    page.press("#check-path", "Enter")
    page.wait_for_selector('.field-error[data-error-for="check.fall"]')
    assert page.locator("#check-fall").get_attribute("aria-invalid") == "true"
    page.fill("#check-fall", "2")
    page.press("#check-path", "Enter")
    page.wait_for_selector('.field-error[data-error-for="check.timeout"]:has-text("must not exceed the interval")')
    page.screenshot(path="/tmp/console-check.png")
    page.fill("#check-timeout", "1s")
    page.fill("#check-headers", "no colon here")  # refused before sending
    page.press("#check-path", "Enter")
    page.wait_for_selector('.field-error[data-error-for="check.headers"]:has-text("line 1")')
    page.fill("#check-headers", "Host: checked.internal\nX-Probe: mesh")
    page.click("#check-dialog button[type=submit]")
    page.wait_for_selector("#check-dialog:not([open])", state="attached")
    check = console_server.api("GET", "/api/v1/services/checked/")["check"]
    assert check == {"type": "http", "path": "/ready", "interval": "5s", "timeout": "1s", "rise": 3,
                     "fall": 2, "expect_status": "200-204", "body": "ok",
                     "headers": {"Host": "checked.internal", "X-Probe": "mesh"}}
    page.wait_for_selector('#service-check dd:has-text("/ready")')


def review_and_save(page: Any) -> Any:
    page.click("#policy-review")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    return dialog


def test_policy_editor_diff_conflict_reapply_and_rollback(
    page: Any, other_page: Any, console_server: ConsoleServer
) -> None:
    console_server.api("POST", "/api/v1/services/", {"name": "pol", "check": {"type": "none"}})
    console_server.api("POST", "/api/v1/services/", {"name": "pol-dr", "check": {"type": "none"}})
    log_in(page)
    page.goto("/services/pol/policy/")
    page.wait_for_selector("#policy-version[data-version='0']")
    page.wait_for_selector("#live-state[data-state=live]")
    log_in(other_page)
    other_page.goto("/services/pol/policy/")
    other_page.wait_for_selector("#live-state[data-state=live]")

    page.select_option("#p-lb", "ring_hash")
    page.select_option("#p-hash-type", "header")
    page.fill("#p-hash-name", "x-user")
    page.fill("#p-attempts", "3")
    page.check('input[name="retries.on"][value="5xx"]')
    page.fill("#p-5xx", "7")
    page.fill("#p-max-req", "500")
    page.check("#p-rl-on")
    page.fill("#p-rps", "50")
    page.fill("#p-burst", "80")
    page.fill("#p-panic", "40")
    page.fill("#p-zones", "zone-1, zone-2")
    page.fill("#p-targets", "pol-dr")
    page.fill("#p-hold", "45s")
    page.fill("#p-connect", "2s")
    dialog = review_and_save(page)
    page.screenshot(path="/tmp/console-policy-diff.png")
    row = dialog.locator('tr[data-path="retries.attempts"]')
    assert (row.locator(".before").inner_text(), row.locator(".after").inner_text()) == ("2", "3")
    assert dialog.locator('tr[data-path="failover.targets"] .after').inner_text() == "pol-dr"
    page.click(CONFIRM)
    page.wait_for_selector("#policy-version[data-version='1']")
    saved = console_server.api("GET", "/api/v1/services/pol/policy/")
    assert saved["hash_on"] == {"type": "header", "name": "x-user"}
    assert saved["rate_limit"] == {"rps": 50.0, "burst": 80}
    assert saved["failover"] == {"targets": ["pol-dr"], "hold_down": "45s"}
    assert saved["retries"]["on"] == ["connect-failure", "reset", "5xx", "gateway-error"]
    assert (saved["zone_priority"], saved["panic_threshold_percent"]) == (["zone-1", "zone-2"], 40)
    # The other console follows (it has no edits of its own).
    other_page.wait_for_selector("#policy-version[data-version='1']", timeout=10_000)
    assert other_page.input_value("#p-hash-name") == "x-user"

    # A bad value: the API's 400 at the field; nothing saved.
    page.allowed_statuses.update({400, 409})
    page.fill("#p-connect", "fast")
    review_and_save(page)
    page.click(CONFIRM)
    page.wait_for_selector('.field-error[data-error-for="connect_timeout"]')
    page.fill("#p-connect", "2s")

    # Someone saves in between: 409 explained, the edit kept, re-applied on the new version.
    page.fill("#p-attempts", "4")
    console_server.api("PATCH", "/api/v1/services/pol/policy/", {"version": 1, "panic_threshold_percent": 30})
    review_and_save(page)
    page.click(CONFIRM)
    page.wait_for_selector("#policy-conflict:not([hidden])")
    assert "Your edits are still in the form" in page.inner_text("#policy-conflict")
    assert page.input_value("#p-attempts") == "4"
    page.click("#policy-reapply")
    page.wait_for_selector("#policy-version[data-version='2']")
    assert "retries.attempts" in page.inner_text("#policy-notice")
    assert (page.input_value("#p-attempts"), page.input_value("#p-panic")) == ("4", "30")
    dialog = review_and_save(page)
    assert dialog.locator("tbody tr").count() == 1  # only the user's own change
    page.click(CONFIRM)
    page.wait_for_selector("#policy-version[data-version='3']")
    now = console_server.api("GET", "/api/v1/services/pol/policy/")
    assert (now["retries"]["attempts"], now["panic_threshold_percent"]) == (4, 30)

    # History and one-click rollback (confirmed with its diff).
    page.wait_for_selector("#policy-versions tr[data-version='1'] [data-rollback]")
    assert page.locator("#policy-versions tbody tr").count() == 3
    page.click("#policy-versions [data-rollback='1']")
    dialog = page.locator("dialog[open]")
    assert dialog.locator('tr[data-path="retries.attempts"] .after').inner_text() == "3"
    page.click(CONFIRM)
    page.wait_for_selector("#policy-version[data-version='4']")
    rolled = console_server.api("GET", "/api/v1/services/pol/policy/")
    assert (rolled["retries"]["attempts"], rolled["panic_threshold_percent"]) == (3, 40)
    page.screenshot(path="/tmp/console-policy.png", full_page=True)
    assert page.input_value("#p-attempts") == "3"


FAILOVER = """
from django.utils import timezone
from policies.models import FailoverState
from registry.models import Service
FailoverState.objects.update_or_create(service=Service.objects.get(name="held"), defaults={
    "active_target": "held-dr", "activated_at": timezone.now(), "reason": "no healthy instance"})
"""


def test_bulk_confirms_and_operator_states_and_failover_are_drawn(
    page: Any, console_server: ConsoleServer
) -> None:
    for name in ("held", "held-dr"):
        console_server.api("POST", "/api/v1/services/", {"name": name, "check": {"type": "none"}})
    for port in (9301, 9302):
        console_server.api("POST", "/api/v1/services/held/instances/", {"address": "127.0.0.1", "port": port})
    log_in(page)
    page.goto("/services/held/")
    page.wait_for_selector("#live-state[data-state=live]")
    page.check("#bulk-form input[name=all]")
    page.select_option("#bulk-form select[name=action]", "maintenance")
    page.click("#bulk-form button[type=submit]")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert "2 of 2 instance(s)" in dialog.inner_text()
    assert dialog.locator("[data-out-of-rotation]").count() == 1
    page.keyboard.press("Escape")
    page.wait_for_selector("#bulk-result:has-text('Cancelled')")
    assert {i["status"] for i in console_server.api("GET", "/api/v1/services/held/instances/")["results"]} == {"passing"}
    page.click("#bulk-form button[type=submit]")
    page.click(CONFIRM)
    page.wait_for_selector("#bulk-result[data-affected='2']", timeout=10_000)
    page.wait_for_selector("#service-health[data-health=maintenance]", timeout=10_000)
    assert "2 maintenance" in page.inner_text("#service-health")

    page.goto("/")
    page.wait_for_selector('#topology-services li[data-service="held"][data-state="maintenance"]')
    colour = page.evaluate(
        "() => { const d = document.getElementById('topology-graph').data.find(t => t.mode === 'markers+text');"
        " return d.marker.color[d.customdata.indexOf('held')]; }")
    assert colour == "#a371f7"  # the maintenance colour, not the red of failure

    console_server.manage("shell", "-c", FAILOVER)
    page.goto("/services/held/")
    page.wait_for_selector("#failover-card:not([hidden]) a[data-failover-target='held-dr']")
    assert page.inner_text("#failover-card [data-hold-down]") == "30s"
    console_server.api("PATCH", "/api/v1/services/held/policy/",
                       {"failover": {"targets": ["held-dr"], "hold_down": "2m"}})
    page.wait_for_selector('#failover-card [data-hold-down]:text-is("2m")', timeout=10_000)  # live
    assert page.inner_text("#service-facts [data-failover-targets]") == "held-dr (hold-down 2m)"
    assert page.get_attribute("#service-health", "data-health") == "failover"
    page.screenshot(path="/tmp/console-failover.png", full_page=True)
    page.goto("/")
    page.wait_for_selector('#topology-services li[data-service="held"][data-state="failover"]:has-text("held-dr")')


TRAFFIC = """
from django.utils import timezone
from monitoring.models import EdgeWindow
from registry.models import Node
Node.objects.get_or_create(name="caller-host", defaults={"zone": ""})
for _ in range(3):
    EdgeWindow.objects.create(window_end=timezone.now(), seconds=10, node="caller-host",
                              source="shop", destination="predicted", requests=200)
"""


def test_what_if_is_shown_before_a_weight_change_is_applied(
    page: Any, console_server: ConsoleServer
) -> None:
    console_server.api("POST", "/api/v1/services/", {"name": "predicted", "check": {"type": "none"}})
    ids = [
        console_server.api("POST", "/api/v1/services/predicted/instances/",
                           {"address": "127.0.0.1", "port": port})["id"]
        for port in (9401, 9402)
    ]
    # A balancer that follows weights (round_robin, the default, ignores them).
    console_server.api("PATCH", "/api/v1/services/predicted/policy/",
                       {"load_balancer": "weighted_round_robin"})
    console_server.manage("shell", "-c", TRAFFIC)  # 20 rps from shop over the last minute
    log_in(page)
    page.goto("/services/predicted/")
    page.wait_for_selector("#live-state[data-state=live]")
    weight = page.locator(f"input[data-weight-for='{ids[1]}']")
    weight.fill("300")
    weight.press("Enter")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    panel = dialog.locator("[data-whatif]")
    assert "20.0 rps" in panel.inner_text()
    assert panel.locator(f"tr[data-whatif-for='{ids[0]}'] [data-predicted]").inner_text() == "5.0"
    assert panel.locator(f"tr[data-whatif-for='{ids[1]}'] [data-predicted]").inner_text() == "15.0"
    assert "shop" in dialog.inner_text()  # the callers affected
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    assert console_server.api("GET", f"/api/v1/services/predicted/instances/{ids[1]}/")["weight"] == 100
    weight = page.locator(f"input[data-weight-for='{ids[1]}']")
    weight.fill("300")
    weight.press("Enter")
    page.click(CONFIRM)
    page.wait_for_function(
        "() => document.querySelector(\"input[data-weight-for='" + ids[1] + "']\").value === '300'")
    for _ in range(50):
        if console_server.api("GET", f"/api/v1/services/predicted/instances/{ids[1]}/")["weight"] == 300:
            break
        page.wait_for_timeout(100)
    assert console_server.api("GET", f"/api/v1/services/predicted/instances/{ids[1]}/")["weight"] == 300
