"""Pages that re-read themselves when another console writes (console.js
`data-live`, the live socket's `changes` topic): the gateway page, which has no
polling, and the security page, whose push-driven re-read is marked on the body
(`data-live-read`) apart from its 5 s polling."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in
from tests.browser.test_console_roles import log_in_as, person

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SUBSCRIBED = "body[data-live-subscribed='1']"


def test_another_consoles_gateway_writes_appear_without_a_reload(
    page: Any, other_page: Any, console_server: ConsoleServer
) -> None:
    log_in_as(other_page, "vera", person(console_server, "vera", "viewer"))
    other_page.goto("/gateway/")
    other_page.wait_for_selector(SUBSCRIBED)
    log_in(page)
    page.goto("/gateway/")
    page.wait_for_selector(SUBSCRIBED)

    console_server.api("POST", "/api/v1/gateway/consumers/", {"name": "live-consumer"})
    for console in (page, other_page):
        console.wait_for_selector('tr[data-consumer="live-consumer"]', timeout=10000)

    console_server.api("POST", "/api/v1/gateway/", {"name": "edge-live"})
    console_server.api("POST", "/api/v1/gateway/edge-live/routes/",
                       {"name": "live-api", "path": {"prefix": "/live"}, "service": "orders"})
    page.wait_for_selector('section[data-gateway="edge-live"] tr[data-route="live-api"]',
                           timeout=10000)
    # The editors start from the pushed page: the new route opens with its fields.
    page.click('button[data-edit-route="live-api"][data-gw="edge-live"]')
    page.wait_for_selector("#route-dialog[open]")
    assert page.input_value("#route-path") == "/live"
    assert "table v1" in page.inner_text("#route-title")
    page.keyboard.press("Escape")

    console_server.api("DELETE", "/api/v1/gateway/consumers/live-consumer/")
    other_page.wait_for_selector('tr[data-consumer="live-consumer"]', state="detached",
                                 timeout=10000)
    assert other_page.locator('section[data-gateway="edge-live"]').count() == 1


def test_the_security_page_is_re_read_when_a_rule_is_written(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/security/")
    page.wait_for_selector(SUBSCRIBED)
    assert page.evaluate("() => document.body.dataset.liveRead") is None
    rule = console_server.api("POST", "/api/v1/intentions/", {
        "source": "web", "destination": "payments", "action": "deny",
        "description": "pushed to every console"})
    page.wait_for_selector(f'tr[data-rule="{rule["id"]}"]', timeout=10000)
    page.wait_for_function("() => document.body.dataset.liveRead !== undefined")
    console_server.api("DELETE", f"/api/v1/intentions/{rule['id']}/")
    page.wait_for_selector(f'tr[data-rule="{rule["id"]}"]', state="detached", timeout=10000)
