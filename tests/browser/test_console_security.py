"""The security page in a real browser: access rules written, edited (a stale
form gets the 409 explained), checked and deleted; the default action switched
behind a confirmation — all through the intentions API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def rules(console_server: ConsoleServer) -> list[dict[str, Any]]:
    data = console_server.api("GET", "/api/v1/intentions/")
    return list(data["results"] if isinstance(data, dict) else data)


def test_write_check_edit_and_delete_an_access_rule(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/security/")
    page.click("#new-rule")
    page.fill("#rule-source", "Bad_Name")
    page.fill("#rule-destination", "payments")
    page.allowed_statuses.add(400)
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#rule-form .field-error[data-error-for=source]")
    assert page.locator("#rule-dialog").is_visible()  # kept open, nothing written
    assert rules(console_server) == []

    page.fill("#rule-source", "web")
    page.select_option("#rule-action", "deny")
    page.fill("#rule-methods", "post")
    page.fill("#rule-path", "/refund")
    page.fill("#rule-description", "no refunds from the edge")
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#rule-table tr[data-rule]")
    (rule,) = rules(console_server)
    assert (rule["source"], rule["destination"], rule["action"]) == ("web", "payments", "deny")
    assert rule["http"] == {"methods": ["POST"], "path_prefix": "/refund"}
    assert "POST · /refund*" in page.locator("#rule-table").inner_text()

    # Would web be allowed to POST /refund/7 to payments? No, by this rule.
    page.fill("#check-form input[name=source]", "web")
    page.fill("#check-form input[name=destination]", "payments")
    page.fill("#check-form input[name=method]", "POST")
    page.fill("#check-form input[name=path]", "/refund/7")
    page.click("#check-form button[type=submit]")
    page.wait_for_selector("#check-result[data-allowed=false]")
    assert f"#{rule['id']}" in page.locator("#check-result").inner_text()

    # Edit, while someone else saves the same rule: the 409 is explained, edits kept.
    page.click(f"tr[data-rule='{rule['id']}'] [data-edit]")
    page.fill("#rule-description", "mine")
    console_server.api("PATCH", f"/api/v1/intentions/{rule['id']}/", {"description": "theirs"})
    page.allowed_statuses.add(409)
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#rule-form .form-error:not([hidden])")
    assert "changed by someone else" in page.locator("#rule-form .form-error").inner_text()
    assert page.input_value("#rule-description") == "mine"
    page.click("#rule-form button[type=submit]")  # save again: overwrite, knowingly
    page.wait_for_selector("#rule-dialog", state="hidden")
    (rule,) = rules(console_server)
    assert (rule["description"], rule["version"]) == ("mine", 3)

    page.click(f"tr[data-rule='{rule['id']}'] [data-delete]")
    page.wait_for_selector("dialog.confirm-dialog")
    assert "web → payments" in page.locator("dialog.confirm-dialog h2").inner_text()
    page.click("dialog.confirm-dialog [data-confirm]")
    page.wait_for_selector("#rule-table tr.empty-row")
    assert rules(console_server) == []


def test_the_default_action_switches_only_after_a_confirmation(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/security/")
    page.click("#default-switch")
    page.wait_for_selector("dialog.confirm-dialog")
    assert "403" in page.locator("dialog.confirm-dialog").inner_text()
    page.keyboard.press("Escape")  # cancel: nothing changes
    page.wait_for_selector("dialog.confirm-dialog", state="detached")
    assert console_server.api("GET", "/api/v1/intentions/default/")["default_action"] == "allow"
    page.click("#default-switch")
    page.click("dialog.confirm-dialog [data-confirm]")
    page.wait_for_selector("#default-text[data-action=deny]")
    assert console_server.api("GET", "/api/v1/intentions/default/")["default_action"] == "deny"
    page.click("#default-switch")  # and back (allow is not destructive: still confirmed)
    page.click("dialog.confirm-dialog [data-confirm]")
    page.wait_for_selector("#default-text[data-action=allow]")
    assert console_server.api("GET", "/api/v1/intentions/default/")["default_action"] == "allow"
