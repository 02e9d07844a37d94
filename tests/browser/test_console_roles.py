"""Roles in the browser, one write per role: a viewer sees no write control and
is refused, an operator puts an instance in maintenance but cannot edit the
policy, an admin can; the audit page shows the change with its diff and
exports it as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PASSWORD, USERNAME, ConsoleServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SERVICE = "roles-svc"
# One write of each kind, from the page's own session (CSRF as the console's
# scripts send it): the status the API answers.
WRITE = """async ([method, path, body]) => {
  try { await Mesh.api(path, { method: method, body: body }); return 200; }
  catch (e) { return e.status; }
}"""


def person(server: ConsoleServer, name: str, role: str) -> str:
    out = server.manage("user", "add", name, "--role", role)
    return out.strip().rsplit("password: ", 1)[1]


def log_in_as(page: Any, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


@pytest.fixture(scope="module")
def instances(console_server: ConsoleServer) -> list[str]:
    console_server.api("POST", "/api/v1/services/", {"name": SERVICE, "check": {"type": "none"}})
    return [
        console_server.api(
            "POST",
            f"/api/v1/services/{SERVICE}/instances/",
            {"address": "127.0.0.1", "port": port, "zone": "zone-1"},
        )["id"]
        for port in (9201, 9202)
    ]


def _policy_patch(page: Any) -> int:
    return int(
        page.evaluate(WRITE, ["PATCH", f"/api/v1/services/{SERVICE}/policy/", {"retries": {"attempts": 3}}])
    )


def test_a_viewer_sees_no_write_control_and_is_refused(
    page: Any, console_server: ConsoleServer, instances: list[str]
) -> None:
    log_in_as(page, "vera", person(console_server, "vera", "viewer"))
    page.goto(f"/services/{SERVICE}/")
    row = f'#instance-table tr[data-instance="{instances[0]}"]'
    page.wait_for_selector(row)
    assert page.inner_text("#role-badge") == "viewer"
    assert page.is_disabled(f'{row} input[role="switch"]')
    assert page.locator(f"{row} button.action").count() == 0
    assert not page.is_visible("#edit-service")
    assert not page.is_visible("#bulk-form")
    page.allowed_statuses.add(403)
    maintenance = f"/api/v1/services/{SERVICE}/instances/{instances[0]}/maintenance/"
    assert page.evaluate(WRITE, ["POST", maintenance, None]) == 403
    page.goto(f"/services/{SERVICE}/policy/")
    page.wait_for_selector("#policy-form")
    assert not page.is_visible("#policy-review")
    assert "Read only: your role (viewer)" in page.inner_text("#policy-read-only")
    assert _policy_patch(page) == 403
    status = console_server.api("GET", f"/api/v1/services/{SERVICE}/instances/{instances[0]}/")
    assert status["status"] == "passing"


def test_an_operator_sets_maintenance_but_cannot_edit_the_policy(
    page: Any, console_server: ConsoleServer, instances: list[str]
) -> None:
    log_in_as(page, "otto", person(console_server, "otto", "operator"))
    page.goto(f"/services/{SERVICE}/")
    row = f'#instance-table tr[data-instance="{instances[0]}"]'
    page.wait_for_selector(f'{row}[data-status="passing"]')
    assert page.is_visible("#bulk-form")
    assert not page.is_visible("#edit-service")
    page.click(f'{row} input[role="switch"]')
    confirm = page.locator("dialog[open] button[data-confirm]")
    if confirm.count():
        confirm.click()
    page.wait_for_selector(f'{row}[data-status="maintenance"]', timeout=10_000)
    url = f"/api/v1/services/{SERVICE}/instances/{instances[0]}/"
    assert console_server.api("GET", url)["status"] == "maintenance"
    page.goto(f"/services/{SERVICE}/policy/")
    page.wait_for_selector("#policy-form")
    assert not page.is_visible("#policy-review")
    page.allowed_statuses.add(403)
    assert _policy_patch(page) == 403


def test_an_admin_edits_the_policy_and_the_audit_page_shows_and_exports_it(
    page: Any, console_server: ConsoleServer, instances: list[str], tmp_path: Path
) -> None:
    log_in_as(page, USERNAME, PASSWORD)
    page.goto(f"/services/{SERVICE}/policy/")
    page.wait_for_selector("#policy-form")
    assert page.is_visible("#policy-review")
    assert _policy_patch(page) == 200
    assert console_server.api("GET", f"/api/v1/services/{SERVICE}/policy/")["retries"]["attempts"] == 3

    # The operator's maintenance (previous test) with its before/after.
    page.goto("/audit/")
    page.fill('input[name="person"], input[name="actor"]', "otto")
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url("**/audit/?actor=otto**")
    entry = page.locator(f'#audit-table tr[data-audit]:has-text("{instances[0]}")').first
    assert "otto" in entry.inner_text()
    changed = entry.locator("tr.diff-changed", has_text="status")
    assert "maintenance" in changed.locator(".diff-after").inner_text()
    with page.expect_download() as download_info:
        page.click("#export-csv")
    saved = tmp_path / "audit.csv"
    download_info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert rows and {r["actor"] for r in rows} == {"otto"}
    assert any(r["object_id"] == instances[0] for r in rows)
