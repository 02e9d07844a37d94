"""The gateway page's JWT provider editor in a real browser: an HS256 provider
with a too-short secret is refused at the field (nothing stored), a valid one
created, edited without re-typing its secret (the stored secret kept); an RS256
one created from a JWKS pasted as JSON (a JWKS URL's errors at its field); a provider a route uses is not deleted
(the 409 explained), one nothing uses is. No page ever renders the secret."""

from __future__ import annotations

import base64
import json
import urllib.error
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in
from tests.browser.test_console_roles import WRITE, log_in_as, person

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CONFIRM = "dialog[open] button[data-confirm]"
PROVIDERS = "/api/v1/gateway/jwt-providers/"
SECRET = "browser-hs-secret-" + "q" * 30  # 48 bytes
SUBMIT = "#provider-form button[type=submit]"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwks() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": "k1", "use": "sig", "n": _b64(public.n), "e": _b64(public.e)}
    return {"keys": [jwk]}


def providers(server: ConsoleServer) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in server.api("GET", PROVIDERS)["results"]}


def stored_secret(server: ConsoleServer, name: str) -> str:
    code = ("import json; from gateway.models import JWTProvider; "
            f"print(json.dumps(JWTProvider.objects.get(name={name!r}).secret))")
    return str(json.loads(server.manage("shell", "-c", code).strip().splitlines()[-1]))


def field_error(page: Any, path: str) -> str:
    selector = f'#provider-form .field-error[data-error-for="{path}"]'
    page.wait_for_selector(selector)
    return str(page.inner_text(selector))


def test_jwt_providers_are_created_edited_and_deleted_without_showing_a_secret(
    page: Any, console_server: ConsoleServer
) -> None:
    log_in(page)
    page.goto("/gateway/")

    # HS256 with a secret too short: the error at the field, nothing stored.
    page.click("#new-provider")
    page.wait_for_selector("#provider-dialog[open]")
    page.fill("#provider-name", "corp-hs")
    page.check('#provider-form input[name="algorithms"][value="HS256"]')
    assert page.input_value("#provider-source") == "secret"
    page.fill("#provider-issuer", "https://idp.example.com")
    page.fill("#provider-audience", "orders")
    page.fill("#provider-secret", "too-short")
    page.allowed_statuses.add(400)
    page.click(SUBMIT)
    assert "at least 32 bytes" in field_error(page, "secret")
    assert page.locator("#provider-dialog[open]").count() == 1
    assert "corp-hs" not in providers(console_server)

    page.fill("#provider-secret", SECRET)
    page.fill("#provider-leeway", "45")
    page.click(SUBMIT)
    page.wait_for_selector("#provider-dialog", state="hidden")
    page.wait_for_selector('#providers-card tr[data-provider="corp-hs"]')
    corp = providers(console_server)["corp-hs"]
    assert (corp["algorithms"], corp["audience"], corp["leeway_s"], corp["secret_set"]) == (
        ["HS256"], "orders", 45, True)
    assert "secret" not in corp
    assert SECRET not in page.content()

    # Edit without re-typing the secret: the form never holds it, and it is kept.
    page.reload()
    page.wait_for_selector('#providers-card tr[data-provider="corp-hs"]')
    assert SECRET not in page.content()
    page.click('button[data-edit-provider="corp-hs"]')
    page.wait_for_selector("#provider-dialog[open]")
    assert page.input_value("#provider-secret") == ""
    assert page.is_visible('[data-secret-help="kept"]')
    assert page.input_value("#provider-issuer") == "https://idp.example.com"
    page.fill("#provider-audience", "orders-v2")
    page.fill("#provider-claim", "client_id")
    page.click(SUBMIT)
    page.wait_for_selector("#provider-dialog", state="hidden")
    page.wait_for_selector('tr[data-provider="corp-hs"] >> text=client_id')
    corp = providers(console_server)["corp-hs"]
    assert (corp["audience"], corp["consumer_claim"], corp["secret_set"]) == (
        "orders-v2", "client_id", True)
    assert stored_secret(console_server, "corp-hs") == SECRET
    assert SECRET not in page.content()

    # RS256 from a JWKS pasted as JSON (a bad paste first: the error at the field).
    jwks = rsa_jwks()
    page.click("#new-provider")
    page.wait_for_selector("#provider-dialog[open]")
    page.fill("#provider-name", "corp-rs")
    page.check('#provider-form input[name="algorithms"][value="RS256"]')
    assert page.input_value("#provider-source") == "jwks"
    assert page.is_hidden("#provider-secret")
    page.fill("#provider-issuer", "https://rs.example.com")
    page.fill("#provider-audience", "orders")
    # A JWKS URL left empty: the API files it under jwks, the page shows it at the URL.
    page.select_option("#provider-source", "jwks_url")
    page.click(SUBMIT)
    assert "exactly one of jwks or jwks_url" in field_error(page, "jwks_url")
    page.fill("#provider-jwks-url", "http://idp.example.com/jwks")
    page.click(SUBMIT)
    assert "https:// only" in field_error(page, "jwks_url")
    assert "corp-rs" not in providers(console_server)
    page.select_option("#provider-source", "jwks")
    page.fill("#provider-jwks", '{"keys": [')
    page.click(SUBMIT)
    assert "not JSON" in field_error(page, "jwks")
    page.fill("#provider-jwks", json.dumps(jwks, indent=2))
    page.click(SUBMIT)
    page.wait_for_selector("#provider-dialog", state="hidden")
    page.wait_for_selector('#providers-card tr[data-provider="corp-rs"] >> text=JWKS (1 keys)')
    corp_rs = providers(console_server)["corp-rs"]
    assert (corp_rs["algorithms"], corp_rs["jwks"], corp_rs["secret_set"]) == (
        ["RS256"], jwks, False)

    # A provider a route uses: the confirmation names the route, the 409 is explained.
    console_server.api("POST", "/api/v1/gateway/", {"name": "edge-p"})
    route = {"name": "jwt-api", "path": {"prefix": "/j"}, "service": "orders",
             "auth": {"type": "jwt", "jwt": {"provider": "corp-hs"}}}
    console_server.api("POST", "/api/v1/gateway/edge-p/routes/", route)
    page.reload()
    page.click('button[data-delete-provider="corp-hs"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert "edge-p/jwt-api" in page.inner_text("dialog.confirm-dialog")
    page.allowed_statuses.add(409)
    page.click(CONFIRM)
    page.wait_for_selector("#gateway-error:not([hidden])")
    assert "Not deleted" in page.inner_text("#gateway-error")
    assert "jwt-api" in page.inner_text("#gateway-error")
    assert "corp-hs" in providers(console_server)
    assert page.locator('#providers-card tr[data-provider="corp-hs"]').count() == 1

    # One nothing uses: gone.
    page.click('button[data-delete-provider="corp-rs"]')
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert "No route uses it" in page.inner_text("dialog.confirm-dialog")
    page.click(CONFIRM)
    page.wait_for_selector('tr[data-provider="corp-rs"]', state="detached")
    assert "corp-rs" not in providers(console_server)
    with pytest.raises(urllib.error.HTTPError) as gone:
        console_server.api("GET", PROVIDERS + "corp-rs/")
    assert gone.value.code == 404
    assert SECRET not in page.content()


def test_a_viewer_gets_no_provider_control_and_a_forged_write_is_refused(
    page: Any, console_server: ConsoleServer
) -> None:
    body = {"name": "viewer-seen", "algorithms": ["HS512"], "issuer": "https://i",
            "audience": "a", "secret": SECRET}
    console_server.api("POST", PROVIDERS, body)
    log_in_as(page, "pia", person(console_server, "pia", "viewer"))
    page.goto("/gateway/")
    page.wait_for_selector('#providers-card tr[data-provider="viewer-seen"]')
    assert "shared secret (hidden)" in page.inner_text('tr[data-provider="viewer-seen"]')
    controls = "#new-provider, #provider-dialog, [data-edit-provider], [data-delete-provider]"
    assert page.locator(controls).count() == 0
    assert SECRET not in page.content()
    page.allowed_statuses.add(403)
    assert page.evaluate(WRITE, ["DELETE", PROVIDERS + "viewer-seen/", None]) == 403
    assert page.evaluate(WRITE, ["POST", PROVIDERS, {**body, "name": "forged"}]) == 403
    assert set(providers(console_server)) >= {"viewer-seen"}
    assert "forged" not in providers(console_server)
