"""The routes and subsets editor on the service page, in a real browser: an
admin changes a split's weights (diff, save; the API and an agent's snapshot
carry them, the read-only panel follows), a bad route gets its error at the field and changes
nothing, a stale edit gets the 409 explained and is kept, a version is rolled
back in one click; a viewer gets the read-only panel and a forged write is 403.
The form: subsets defined by tag (with the instances each selects), a route with a canary
split saved exactly as entered, a bad weight's error at its field, and the JSON view
round-tripping a field the form does not show."""

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


def json_view(page: Any) -> None:
    page.click('#routes-view:has-text("Edit as JSON")')
    page.wait_for_selector("#routes-document", state="visible")


def form_view(page: Any) -> None:
    page.click('#routes-view:has-text("Back to the form")')
    page.wait_for_selector("#routes-structured", state="visible")


def test_a_bad_route_shows_the_error_at_the_field_and_changes_nothing(
    page: Any, console_server: ConsoleServer, routed: dict[str, Any]
) -> None:
    log_in(page)
    open_editor(page)
    before = console_server.api("GET", URL)
    bad = {**DOCUMENT, "routes": [{**DOCUMENT["routes"][0], "split": [
        {"subset": "v1", "weight": 1}, {"subset": "v9", "weight": 1}]}]}
    json_view(page)
    page.fill("#routes-document", json.dumps(bad))
    page.allowed_statuses.add(400)
    save(page)
    # In the JSON view the message is at the document, with its path ...
    page.wait_for_selector(".field-error[data-error-for=document]"
                           ":has-text(\"routes.0.split.1.subset: unknown subset 'v9'\")")
    # ... and back in the form, at the field: the subset it names is kept, marked.
    form_view(page)
    error = page.locator('.field-error[data-error-for="routes.0.split.1.subset"]')
    assert "unknown subset 'v9'" in error.inner_text()
    field = 'select[name="routes.0.split.1.subset"]'
    assert page.get_attribute(field, "aria-invalid") == "true"
    assert page.input_value(field) == "v9"
    # An error about the whole split lands at the split.
    page.fill('input[name="routes.0.split.1.weight"]', "0")
    page.select_option(field, "v2")
    page.fill('input[name="routes.0.split.0.weight"]', "0")
    save(page)
    error = page.locator('fieldset[data-route-index="0"] .field-error[data-error-for="routes.0.split"]')
    error.wait_for()
    assert "the weights must not all be 0" in error.inner_text()
    assert page.get_attribute('[data-errors-for="routes.0.split"]', "aria-invalid") == "true"
    # A weight that is not a number lands on its own field.
    page.fill('input[name="routes.0.split.0.weight"]', "-3")
    save(page)
    page.wait_for_selector('.field-error[data-error-for="routes.0.split.0.weight"]')
    after = console_server.api("GET", URL)
    assert (after["version"], after["routes"]) == (before["version"], before["routes"])
    # Not JSON: said at the document, nothing sent, and the form is not shown it.
    json_view(page)
    page.fill("#routes-document", "{not json")
    page.click("#routes-review")
    page.wait_for_selector('.field-error[data-error-for="document"]:has-text("not valid JSON")')
    page.click("#routes-view")
    page.wait_for_selector('.field-error[data-error-for="document"]:has-text("not valid JSON")')
    assert page.is_visible("#routes-document")
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


FORM_SERVICE = "form-svc"
FORM_URL = f"/api/v1/services/{FORM_SERVICE}/routes/"
ENTERED = {
    "subsets": {"v1": {"tags": ["v1"], "metadata": {}}, "v2": {"tags": ["v2"], "metadata": {}}},
    "routes": [
        {"name": "api", "match": {"path": {"prefix": "/api"}},
         "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
         "fallback": "next"},
    ],
}


@pytest.fixture(scope="module")
def instances(console_server: ConsoleServer) -> None:
    """A service without routes and three instances: two tagged v1, one v2."""
    console_server.api("POST", "/api/v1/services/", {"name": FORM_SERVICE, "check": {"type": "none"}})
    for port, tags in ((9101, ["v1"]), (9102, ["v1"]), (9103, ["v2", "canary"])):
        console_server.api("POST", f"/api/v1/services/{FORM_SERVICE}/instances/",
                           {"address": "127.0.0.1", "port": port, "tags": tags})


def open_form(page: Any) -> None:
    page.goto(f"/services/{FORM_SERVICE}/")
    page.click("#routes-edit")
    page.wait_for_selector("#routes-version:not(:has-text('…'))")


def count(page: Any, subset: str, text: str) -> None:
    page.wait_for_selector(f'output.subset-count[data-subset="{subset}"]:has-text("{text}")')


def add_subset(page: Any, name: str, tags: str) -> None:
    page.click("#routes-add-subset")
    new = "#routes-subsets fieldset.subset-edit:last-of-type input.subset-name"
    page.fill(new, name)
    page.press(new, "Tab")  # a rename applies on change
    page.wait_for_selector(f'input[name="subsets.{name}.tags"]')
    count(page, name, "selects 3 of 3 instances")  # no tag yet: every instance
    page.fill(f'input[name="subsets.{name}.tags"]', tags)


def test_a_canary_route_built_in_the_form_is_saved_as_entered(
    page: Any, console_server: ConsoleServer, instances: None
) -> None:
    assert console_server.api("GET", FORM_URL)["version"] == 0
    log_in(page)
    open_form(page)
    add_subset(page, "v1", "v1")
    count(page, "v1", "selects 2 of 3 instances")
    add_subset(page, "v2", "v2")
    count(page, "v2", "selects 1 of 3 instances")
    page.click("#routes-add-route")
    route = 'fieldset[data-route-index="0"]'
    page.fill('input[name="routes.0.name"]', "api")
    assert page.input_value(f'{route} select[data-errors-for="routes.0.match.path"]') == "prefix"
    page.fill('input[name="routes.0.match.path.prefix"]', "/api")
    page.select_option(f"{route} select.canary-stable", "v1")
    page.select_option(f"{route} select.canary-subset", "v2")
    page.fill(f"{route} input.canary-percent", "10")
    page.click(f'{route} button.canary-apply:has-text("Split 90/10")')
    assert page.input_value('input[name="routes.0.split.0.weight"]') == "90"
    assert page.input_value('input[name="routes.0.split.1.weight"]') == "10"
    assert page.input_value('select[name="routes.0.split.1.subset"]') == "v2"
    page.wait_for_selector(f'{route} .split-total:has-text("total 100")')
    page.click("#routes-review")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    diff = page.locator("dialog.confirm-dialog table.diff")
    assert diff.locator('tr[data-path="subsets.v1"] td.after').inner_text() == "tags=v1, metadata=—"
    assert diff.locator('tr[data-path="subsets.v2"] td.before').inner_text() == "—"
    added = diff.locator('tr[data-path="routes.0"] td.after').inner_text()
    assert "name=api" in added and "prefix=/api" in added and "weight=10" in added
    page.click(CONFIRM)
    page.wait_for_selector('#routes-result:has-text("Saved as v1")')
    saved = console_server.api("GET", FORM_URL)
    assert saved["version"] == 1
    assert {"subsets": saved["subsets"], "routes": saved["routes"]} == ENTERED
    # The page's own document is the saved one, and the panel above shows it.
    json_view(page)
    assert json.loads(page.input_value("#routes-document")) == ENTERED
    page.wait_for_selector('#route-table:has-text("v1 90% · v2 10%")')


def test_an_invalid_weight_in_the_form_gets_the_apis_error_at_that_field(
    page: Any, console_server: ConsoleServer, instances: None
) -> None:
    console_server.api("PUT", FORM_URL, ENTERED)  # as the test above left it (or a no-op)
    before = console_server.api("GET", FORM_URL)
    log_in(page)
    open_form(page)
    weight = 'input[name="routes.0.split.1.weight"]'
    page.fill(weight, "-1")
    page.allowed_statuses.add(400)
    save(page)
    error = page.locator('.field-error[data-error-for="routes.0.split.1.weight"]')
    error.wait_for()
    assert error.inner_text() == "expected 0..1000000"
    # At that field: in its row, the field marked and described by the message.
    row = page.locator(f".rf-row:has({weight})")
    assert row.locator(".field-error").count() == 1
    assert page.get_attribute(weight, "aria-invalid") == "true"
    assert page.get_attribute(weight, "aria-describedby") == error.get_attribute("id")
    assert page.locator(".field-error").count() == 1
    after = console_server.api("GET", FORM_URL)
    assert (after["version"], after["subsets"], after["routes"]) == (
        before["version"], before["subsets"], before["routes"])


def test_the_json_view_and_the_form_keep_a_field_the_form_does_not_show(
    page: Any, console_server: ConsoleServer, instances: None
) -> None:
    console_server.api("PUT", FORM_URL, ENTERED)
    before = console_server.api("GET", FORM_URL)
    log_in(page)
    open_form(page)
    json_view(page)
    doc = json.loads(page.input_value("#routes-document"))
    # A shape the form cannot draw keeps the JSON view, saying where.
    page.fill("#routes-document", json.dumps({**doc, "routes": [doc["routes"][0], 5]}))
    page.click("#routes-view")
    page.wait_for_selector('.field-error[data-error-for="document"]:has-text("routes.1: expected an object")')
    assert page.is_visible("#routes-document") and page.is_hidden("#routes-structured")
    doc["routes"][0]["x-note"] = "kept by the form"
    doc["routes"][0]["split"][0]["x-owner"] = {"team": "a"}
    page.fill("#routes-document", json.dumps(doc))
    form_view(page)
    # An edit in the form, then the JSON again: the edit and the unknown fields.
    page.fill('input[name="routes.0.split.1.weight"]', "20")
    page.fill('input[name="routes.0.match.path.prefix"]', "/api/v2")
    json_view(page)
    back = json.loads(page.input_value("#routes-document"))
    doc["routes"][0]["split"][1]["weight"] = 20
    doc["routes"][0]["match"]["path"]["prefix"] = "/api/v2"
    assert back == doc
    # The API does not know the field either: its error at the route, nothing stored.
    form_view(page)
    page.allowed_statuses.add(400)
    save(page)
    error = page.locator('fieldset[data-route-index="0"] > .field-error[data-error-for="routes.0"]')
    error.wait_for()
    assert "x-note: unknown field" in error.inner_text()
    page.wait_for_selector('.field-error[data-error-for="routes.0.split.0"]:has-text("x-owner: unknown field")')
    after = console_server.api("GET", FORM_URL)
    assert (after["version"], after["routes"]) == (before["version"], before["routes"])


def test_every_route_field_from_the_form_is_saved_and_routes_move_and_renames_follow(
    page: Any, console_server: ConsoleServer, instances: None
) -> None:
    console_server.api("PUT", FORM_URL, ENTERED)
    log_in(page)
    open_form(page)
    page.click("#routes-add-route")
    r = 'fieldset[data-route-index="1"]'
    page.fill('input[name="routes.1.name"]', "testers")
    page.select_option(f'{r} select[data-errors-for="routes.1.match.path"]', "")
    assert page.is_hidden('input[name="routes.1.match.path.value"]')
    page.fill('input[name="routes.1.match.methods"]', "get, post")
    page.click(f'{r} [data-errors-for="routes.1.match.headers"] button.rf-add')
    page.fill('input[name="routes.1.match.headers.0.name"]', "X-Tester")
    page.select_option('select[data-errors-for="routes.1.match.headers.0"]', "present")
    page.click(f'{r} [data-errors-for="routes.1.match.query"] button.rf-add')
    page.fill('input[name="routes.1.match.query.0.name"]', "debug")
    page.fill('input[name="routes.1.match.query.0.exact"]', "1")
    page.select_option('select[name="routes.1.split.0.subset"]', "v2")
    page.fill('input[name="routes.1.split.0.weight"]', "1")
    page.select_option('select[data-errors-for="routes.1.sticky"]', "cookie")
    page.fill('input[name="routes.1.sticky.cookie"]', "session")
    page.select_option('select[name="routes.1.fallback"]', "fail")
    page.select_option('select[data-errors-for="routes.1.rewrite"]', "path")
    page.fill('input[name="routes.1.rewrite.path"]', "/internal")
    page.click(f'{r} [data-errors-for="routes.1.request_headers.set"] button.rf-add')
    page.fill(f'{r} [data-errors-for="routes.1.request_headers.set"] input[aria-label="request header name"]',
              "x-mesh-route")
    page.fill('input[name="routes.1.request_headers.set.x-mesh-route"]', "testers")
    page.fill('input[name="routes.1.request_headers.remove"]', "x-debug")
    page.fill('input[name="routes.1.response_headers.remove"]', "server")
    page.fill('input[name="routes.1.timeout_ms"]', "2000")
    page.fill('input[name="routes.1.retries.attempts"]', "1")
    # The specific route first; then v2 renamed: the splits follow.
    page.click(f'{r} button[data-move="up"]')
    page.wait_for_selector('fieldset[data-route-index="0"] input[name="routes.0.name"][value="testers"]')
    page.fill('input[name="subsets.v2"]', "canary")
    page.press('input[name="subsets.v2"]', "Tab")
    page.wait_for_selector('input[name="subsets.canary.tags"]')
    assert page.input_value('select[name="routes.0.split.0.subset"]') == "canary"
    assert page.input_value('select[name="routes.1.split.1.subset"]') == "canary"
    save(page)
    page.wait_for_selector('#routes-result:has-text("Saved as")')
    saved = console_server.api("GET", FORM_URL)
    testers = {
        "name": "testers",
        "match": {"methods": ["GET", "POST"], "headers": [{"name": "x-tester", "present": True}],
                  "query": [{"name": "debug", "exact": "1"}]},
        "split": [{"subset": "canary", "weight": 1}],
        "fallback": "fail",
        "sticky": {"cookie": "session"},
        "rewrite": {"path": "/internal"},
        "request_headers": {"set": {"x-mesh-route": "testers"}, "remove": ["x-debug"]},
        "response_headers": {"set": {}, "remove": ["server"]},
        "timeout_ms": 2000,
        "retries": {"attempts": 1},
    }
    api = {**ENTERED["routes"][0], "split": [{"subset": "v1", "weight": 90},
                                             {"subset": "canary", "weight": 10}]}
    assert saved["routes"] == [testers, api]
    assert saved["subsets"] == {"v1": ENTERED["subsets"]["v1"], "canary": ENTERED["subsets"]["v2"]}
    # The form now shows the normalized document (the header name lower-cased).
    assert page.input_value('input[name="routes.0.match.headers.0.name"]') == "x-tester"
