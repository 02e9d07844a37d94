"""The routes and subsets editor on the service page, in a real browser: an
admin changes a split's weights (diff, save; the API and an agent's snapshot
carry them, the read-only panel follows), a bad route gets its error at the route and changes
nothing, a stale edit gets the 409 explained and is kept, a version is rolled
back in one click; a viewer gets the read-only panel and a forged write is 403."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in
from tests.browser.test_console_roles import WRITE, log_in_as, person

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SERVICE = "canary-svc"
URL = f"/api/v1/services/{SERVICE}/routes/"
CONFIRM = "dialog[open] button[data-confirm]"
DOCUMENT = {
    "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}},
    "routes": [
        {"name": "main", "match": {"path": {"prefix": "/"}},
         "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]},
    ],
}


@pytest.fixture(scope="module")
def routed(console_server: ConsoleServer) -> dict[str, Any]:
    console_server.api("POST", "/api/v1/services/", {"name": SERVICE, "check": {"type": "none"}})
    return dict(console_server.api("PUT", URL, DOCUMENT))


@pytest.fixture(scope="module")
def agent(console_server: ConsoleServer, routed: dict[str, Any]) -> tuple[str, str]:
    """An agent calling the service: (its id, its token)."""
    token = console_server.api("POST", "/api/v1/agents/enrollment-tokens/", {})["token"]
    body = {"token": token, "node": "routes-host", "zone": "zone-1", "version": "0.1.0",
            "upstreams": [{"service": SERVICE}]}
    request = urllib.request.Request(
        console_server.url + "/api/v1/agents/enroll/", data=json.dumps(body).encode(),
        method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    return answer["agent_id"], answer["agent_token"]


def snapshot_weights(server: ConsoleServer, agent: tuple[str, str]) -> list[int]:
    request = urllib.request.Request(
        f"{server.url}/api/v1/agents/{agent[0]}/config/",
        headers={"Authorization": f"Agent {agent[1]}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        snapshot = json.loads(response.read())
    return [t["weight"] for t in snapshot["upstreams"][SERVICE]["routes"][0]["split"]]


def weights(server: ConsoleServer) -> list[int]:
    doc = server.api("GET", URL)
    return [t["weight"] for t in doc["routes"][0]["split"]]


def open_editor(page: Any) -> None:
    page.goto(f"/services/{SERVICE}/")
    page.click("#routes-edit")
    page.wait_for_selector('input[name="routes.0.split.1.weight"]')


def save(page: Any) -> None:
    page.click("#routes-review")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    page.click(CONFIRM)


def test_an_admin_edits_a_split_and_saves(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any], agent: tuple[str, str]
) -> None:
    assert snapshot_weights(console_server, agent) == [90, 10]
    log_in(page)
    open_editor(page)
    version = console_server.api("GET", URL)["version"]
    page.wait_for_selector(f'#routes-version:has-text("v{version}")')
    page.fill('input[name="routes.0.split.0.weight"]', "50")
    page.fill('input[name="routes.0.split.1.weight"]', "50")
    page.click("#routes-review")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    diff = page.locator("dialog.confirm-dialog table.diff")
    assert diff.locator('tr[data-path="routes.0.split.0.weight"] td.after').inner_text() == "50"
    assert diff.locator('tr[data-path="routes.0.split.1.weight"] td.before').inner_text() == "10"
    page.click(CONFIRM)
    page.wait_for_selector(f'#routes-version:has-text("v{version + 1}")')
    assert weights(console_server) == [50, 50]
    assert snapshot_weights(console_server, agent) == [50, 50]
    # The read-only panel above follows, and the version is in the history.
    page.wait_for_selector('#route-table:has-text("v1 50% · v2 50%")')
    page.wait_for_selector(f'#routes-versions tr[data-version="{version + 1}"]')


def test_a_bad_route_shows_the_error_at_the_route_and_changes_nothing(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any]
) -> None:
    log_in(page)
    open_editor(page)
    before = console_server.api("GET", URL)
    bad = {**DOCUMENT, "routes": [{**DOCUMENT["routes"][0], "split": [
        {"subset": "v1", "weight": 1}, {"subset": "v9", "weight": 1}]}]}
    page.fill("#routes-document", json.dumps(bad))
    page.dispatch_event("#routes-document", "change")
    page.allowed_statuses.add(400)
    save(page)
    error = page.locator('fieldset[data-route-index="0"] .field-error')
    error.wait_for()
    assert "split.1.subset" in error.inner_text() and "unknown subset 'v9'" in error.inner_text()
    assert page.get_attribute('fieldset[data-route-index="0"]', "aria-invalid") == "true"
    # A weight that is not a number lands on its own field.
    page.fill('input[name="routes.0.split.0.weight"]', "-3")
    save(page)
    page.wait_for_selector('.field-error[data-error-for="routes.0.split.0.weight"]')
    after = console_server.api("GET", URL)
    assert (after["version"], after["routes"]) == (before["version"], before["routes"])
    # Not JSON: said at the document, nothing sent.
    page.fill("#routes-document", "{not json")
    page.click("#routes-review")
    page.wait_for_selector('.field-error[data-error-for="document"]:has-text("not valid JSON")')
    assert console_server.api("GET", URL)["version"] == before["version"]


def test_a_stale_edit_gets_the_409_explained_and_is_kept(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any]
) -> None:
    log_in(page)
    open_editor(page)
    opened = console_server.api("GET", URL)
    v = opened["version"]
    page.wait_for_selector(f'#routes-version:has-text("v{v}")')
    mine_first = opened["routes"][0]["split"][0]["weight"]
    theirs = {"subsets": opened["subsets"], "routes": [
        {**opened["routes"][0], "split": [{"subset": "v1", "weight": 70}, {"subset": "v2", "weight": 30}]}]}
    # The user starts editing, and someone else saves meanwhile (had they saved
    # first, the page would follow their save live: nothing to refuse).
    page.fill('input[name="routes.0.split.1.weight"]', "99")
    console_server.api("PUT", URL, theirs)
    page.allowed_statuses.add(409)
    save(page)
    page.wait_for_selector("#routes-conflict:not([hidden])")
    text = page.inner_text("#routes-conflict-text")
    assert f"after you opened v{v}" in text
    assert f"v{v + 1}" in text and "routes.0.split.0.weight" in text
    assert page.input_value('input[name="routes.0.split.1.weight"]') == "99"  # the edit is kept
    assert weights(console_server) == [70, 30]
    page.click("#routes-rebase")
    page.wait_for_selector(f'#routes-version:has-text("v{v + 1}")')
    save(page)  # knowingly over theirs: the review listed both weights
    page.wait_for_selector(f'#routes-version:has-text("v{v + 2}")')
    assert weights(console_server) == [mine_first, 99]


def test_one_click_rollback(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any]
) -> None:
    log_in(page)
    open_editor(page)
    first = routed["version"]
    latest = console_server.api("GET", URL)["version"]
    assert weights(console_server) != [90, 10]
    page.click(f'#routes-versions tr[data-version="{first}"] button[data-rollback]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert f"v{first}" in page.inner_text("dialog.confirm-dialog h2")
    page.click(CONFIRM)
    page.wait_for_selector(f'#routes-version:has-text("v{latest + 1}")')
    assert weights(console_server) == [90, 10]
    assert page.input_value('input[name="routes.0.split.1.weight"]') == "10"


def test_a_viewer_gets_the_panel_only_and_a_forged_write_is_refused(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any]
) -> None:
    log_in_as(page, "rita", person(console_server, "rita", "viewer"))
    page.goto(f"/services/{SERVICE}/")
    page.wait_for_selector("#route-table")
    assert page.locator("#routes-editor, #routes-form, #routes-review").count() == 0
    assert "Read only for your role (viewer)" in page.inner_text("#routes-read-only")
    before = console_server.api("GET", URL)
    page.allowed_statuses.add(403)
    assert page.evaluate(WRITE, ["PUT", URL, DOCUMENT]) == 403
    rollback = f"{URL}versions/{before['version']}/rollback/"
    assert page.evaluate(WRITE, ["POST", rollback, None]) == 403
    assert console_server.api("GET", URL)["version"] == before["version"]
