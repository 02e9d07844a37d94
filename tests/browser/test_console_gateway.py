"""The gateway page's editors in a real browser: a gateway and a route created
(a bad field shown at the field, nothing stored), edited (a stale table gets the
409 explained, the form kept) and deleted behind a confirmation naming its
service; a consumer created, a key shown once with a copy button (a reload does
not show it), revoked; a consumer a route names is not deleted, and says so. A
viewer sees no write control and a forged write is 403."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in
from tests.browser.test_console_roles import WRITE, log_in_as, person

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CONFIRM = "dialog[open] button[data-confirm]"
GW = "edge-b"
TABLE = f"/api/v1/gateway/{GW}/routes/"


def table(server: ConsoleServer) -> dict[str, Any]:
    return dict(server.api("GET", TABLE))


@pytest.fixture(scope="module")
def edge(console_server: ConsoleServer) -> str:
    console_server.api("POST", "/api/v1/gateway/", {"name": GW})
    return GW


def test_a_gateway_is_created_and_deleted_naming_its_routes(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/gateway/")
    page.click("#new-gateway")
    page.fill("#gateway-name", "edge-c")
    page.press("#gateway-name", "Enter")
    page.wait_for_selector('section[data-gateway="edge-c"]')
    route = {"name": "c-api", "path": {"prefix": "/c"}, "service": "web"}
    console_server.api("POST", "/api/v1/gateway/edge-c/routes/", route)
    page.reload()
    page.click('button[data-delete-gateway="edge-c"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert "c-api → web" in page.inner_text("dialog.confirm-dialog")
    page.click(CONFIRM)
    page.wait_for_selector('section[data-gateway="edge-c"]', state="detached")
    names = [g["name"] for g in console_server.api("GET", "/api/v1/gateway/")["results"]]
    assert "edge-c" not in names


def test_a_gateway_route_is_created_edited_and_deleted(
    page: Any, console_server: ConsoleServer, edge: str
) -> None:
    log_in(page)
    page.goto("/gateway/")

    page.click(f'button[data-new-route="{GW}"]')
    page.wait_for_selector("#route-dialog[open]")
    page.fill("#route-name", "orders-api")
    page.fill("#route-hosts", "api.example.com")
    page.fill("#route-path", "/orders")
    page.fill("#route-service", "no-such-service")
    page.allowed_statuses.add(400)
    page.click("#route-form button[type=submit]")
    page.wait_for_selector('#route-form .field-error[data-error-for="service"]')
    assert "no service" in page.inner_text('#route-form .field-error[data-error-for="service"]')
    assert page.locator("#route-dialog[open]").count() == 1
    assert table(console_server)["routes"] == []  # nothing stored

    page.fill("#route-service", "orders")
    page.select_option("#route-auth", "key")
    page.fill("#route-limits", "100/second burst 20")
    page.click("#route-form button[type=submit]")
    page.wait_for_selector("#route-dialog", state="hidden")
    page.wait_for_selector(f'section[data-gateway="{GW}"] tr[data-route="orders-api"]')
    (route,) = table(console_server)["routes"]
    assert (route["hosts"], route["path"], route["service"]) == (
        ["api.example.com"], {"prefix": "/orders"}, "orders")
    assert route["auth"]["type"] == "key"
    assert route["rate_limits"] == [
        {"scope": "route", "mode": "local", "requests": 100, "per": "second", "burst": 20}]

    # Edit while someone else changes the table: the 409 is explained, the form kept.
    page.click(f'button[data-edit-route="orders-api"][data-gw="{GW}"]')
    page.wait_for_selector("#route-dialog[open]")
    assert page.input_value("#route-limits") == "100/second burst 20 local route"
    page.fill("#route-timeout", "2500")
    other = {"name": "pay-api", "path": {"prefix": "/pay"}, "service": "payments"}
    console_server.api("POST", TABLE, other)
    page.allowed_statuses.add(409)
    page.click("#route-form button[type=submit]")
    page.wait_for_selector("#route-form .form-error:not([hidden])")
    assert "changed by someone else" in page.inner_text("#route-form .form-error")
    assert page.input_value("#route-timeout") == "2500"
    assert "timeout_ms" not in table(console_server)["routes"][0]
    page.click("#route-form button[type=submit]")  # again, onto the newer table
    page.wait_for_selector("#route-dialog", state="hidden")
    now = table(console_server)
    assert [r["name"] for r in now["routes"]] == ["orders-api", "pay-api"]
    assert now["routes"][0]["timeout_ms"] == 2500

    page.wait_for_selector('tr[data-route="pay-api"] button[data-delete-route]')
    page.click(f'button[data-delete-route="orders-api"][data-gw="{GW}"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    body = page.inner_text("dialog.confirm-dialog")
    assert "orders-api" in body and "service orders" in body and "api.example.com" in body
    page.click(CONFIRM)
    page.wait_for_selector('tr[data-route="orders-api"]', state="detached")
    assert [r["name"] for r in table(console_server)["routes"]] == ["pay-api"]


def test_a_consumer_key_is_shown_once_and_revoked(
    page: Any, console_server: ConsoleServer, edge: str
) -> None:
    log_in(page)
    page.goto("/gateway/")
    page.click("#new-consumer")
    page.fill("#consumer-name", "mobile")
    page.fill("#consumer-description", "the phone app")
    page.press("#consumer-name", "Enter")
    page.wait_for_selector('tr[data-consumer="mobile"]')
    assert console_server.api("GET", "/api/v1/gateway/consumers/mobile/")["description"] == (
        "the phone app")

    page.click('button[data-new-key="mobile"]')
    page.fill("#key-description", "ci")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-shown-dialog[open]")
    assert "you will not see it again" in page.inner_text("#key-shown-dialog")
    key = page.input_value("#key-shown-value")
    assert len(key) >= 40
    page.click("#key-copy")
    page.wait_for_selector("#key-copy-state:not(:empty)")
    keys = console_server.api("GET", "/api/v1/gateway/consumers/mobile/keys/")["results"]
    assert [k["prefix"] for k in keys] == [key[: len(keys[0]["prefix"])]]
    page.click("#key-shown-done")
    page.wait_for_selector("#key-shown-dialog", state="hidden")
    page.wait_for_selector(f'tr[data-consumer="mobile"] [data-key="{keys[0]["prefix"]}"]')
    assert key not in page.content()
    page.reload()
    page.wait_for_selector('tr[data-consumer="mobile"]')
    html = page.content()
    assert key not in html and hashlib.sha256(key.encode()).hexdigest() not in html

    # A route that names the consumer: its delete is refused, and the dialog said why.
    route = {"name": "mobile-api", "path": {"prefix": "/m"}, "service": "orders",
             "auth": {"type": "key", "consumers": ["mobile"]}}
    console_server.api("POST", TABLE, route)
    page.reload()
    page.click('button[data-delete-consumer="mobile"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert f"{GW}/mobile-api" in page.inner_text("dialog.confirm-dialog")
    page.allowed_statuses.add(409)
    page.click(CONFIRM)
    page.wait_for_selector("#gateway-error:not([hidden])")
    assert "mobile-api" in page.inner_text("#gateway-error")
    assert console_server.api("GET", "/api/v1/gateway/consumers/mobile/")["name"] == "mobile"

    page.click(f'button[data-revoke-key="{keys[0]["prefix"]}"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert f"{GW}/mobile-api" in page.inner_text("dialog.confirm-dialog")
    page.click(CONFIRM)
    page.wait_for_selector(f'[data-key="{keys[0]["prefix"]}"]', state="detached")
    assert console_server.api("GET", "/api/v1/gateway/consumers/mobile/keys/")["results"] == []


def test_a_viewer_sees_no_write_control_and_a_forged_write_is_refused(
    page: Any, console_server: ConsoleServer, edge: str
) -> None:
    log_in_as(page, "gwen", person(console_server, "gwen", "viewer"))
    page.goto("/gateway/")
    page.wait_for_selector("#consumers-card")
    assert "Read only" in page.inner_text("#gateway-read-only")
    controls = ("#new-gateway, #new-consumer, #route-dialog, [data-new-route], [data-edit-route],"
                " [data-delete-route], [data-new-key], [data-revoke-key], [data-delete-consumer]")
    assert page.locator(controls).count() == 0
    before = table(console_server)
    page.allowed_statuses.add(403)
    forged = {"name": "forged", "path": {"prefix": "/x"}, "service": "orders"}
    assert page.evaluate(WRITE, ["POST", TABLE, forged]) == 403
    assert page.evaluate(WRITE, ["POST", "/api/v1/gateway/consumers/", {"name": "evil"}]) == 403
    assert table(console_server) == before
