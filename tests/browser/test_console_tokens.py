"""Enrollment tokens in the console (staff): create one (shown once), see it
listed, revoke it — through the same API meshctl uses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def test_create_list_and_revoke_an_enrollment_token(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/agents/")
    page.wait_for_selector("#token-table tbody tr")
    page.fill("#token-form input[name=description]", "browser rack")
    page.fill("#token-form input[name=ttl]", "2h")
    page.fill("#token-form input[name=max_uses]", "3")
    page.fill("#token-form input[name=services]", "orders, users")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-new:not([hidden])")
    raw = page.locator("#token-value").inner_text()
    assert raw.startswith("mesh-enroll-")
    row = page.locator("#token-table tr", has_text="browser rack")
    row.wait_for()
    assert "active" in row.inner_text() and "0 / 3" in row.inner_text()
    assert "orders, users" in row.inner_text()
    assert raw not in page.locator("#token-table").inner_text()  # the secret is never listed

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Revoke").click()
    page.wait_for_function(
        "[...document.querySelectorAll('#token-table tr')]"
        ".some(r => r.textContent.includes('browser rack') && r.textContent.includes('revoked'))"
    )
    tokens = console_server.api("GET", "/api/v1/agents/enrollment-tokens/")
    tokens = tokens["results"] if isinstance(tokens, dict) else tokens
    mine = [t for t in tokens if t["description"] == "browser rack"]
    assert len(mine) == 1 and mine[0]["revoked"]
    assert mine[0]["services"] == ["orders", "users"]
    assert page.errors == []
