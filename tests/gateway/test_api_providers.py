"""JWT providers: an allow-list of algorithms (never `none`, never HS mixed with
RS/ES), HS secrets of 32 bytes or more, JWKS or an https JWKS URL, bounded
leeway; the secret is write-only (absent from GET and audit)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.models import JWTProvider
from journal.models import AuditEntry
from tests.gateway.helpers import HS_SECRET

pytestmark = pytest.mark.django_db

PROVIDERS = "/api/v1/gateway/jwt-providers/"
RSA_JWKS = {"keys": [{"kty": "RSA", "kid": "k1", "n": "sXch", "e": "AQAB"}]}


def hs(**extra: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "algorithms": ["HS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "secret": HS_SECRET,
        **extra,
    }


def rs(**extra: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "algorithms": ["RS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "jwks": RSA_JWKS,
        **extra,
    }


BAD = [
    (hs(algorithms=["none"]), "algorithms"),
    (hs(algorithms=["None"]), "algorithms"),
    (hs(algorithms=["HS256", "RS256"]), "algorithms"),
    (hs(algorithms=["XS256"]), "algorithms"),
    (hs(algorithms=[]), "algorithms"),
    (hs(secret="short"), "secret"),
    (hs(secret="x" * 31), "secret"),
    ({k: v for k, v in hs().items() if k != "secret"}, "secret"),
    (hs(jwks=RSA_JWKS), "jwks"),
    (rs(jwks=None), "jwks"),
    (rs(jwks_url="https://idp/jwks"), "jwks"),
    (rs(jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}), "jwks"),
    (rs(jwks={"keys": [{"kty": "RSA", "n": "a", "e": "AQAB", "d": "private"}]}), "jwks"),
    (rs(jwks=[1, 2]), "jwks"),
    (rs(secret=HS_SECRET), "secret"),
    (rs(jwks=None, jwks_url="http://idp.example.com/jwks"), "jwks_url"),
    (rs(jwks=None, jwks_url="ftp://idp/jwks"), "jwks_url"),
    (hs(leeway_s=301), "leeway_s"),
    (hs(leeway_s=-1), "leeway_s"),
    (hs(issuer=""), "issuer"),
    (hs(audience=""), "audience"),
    (hs(consumer_claim="a b"), "consumer_claim"),
    (hs(name="Corp"), "name"),
    (hs(extra=1), "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f for _, f in BAD])
def test_a_bad_provider_is_a_400_naming_its_field(
    api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = api.post(PROVIDERS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not JWTProvider.objects.exists()


def test_good_providers_and_a_write_only_secret(api: APIClient) -> None:
    response = api.post(PROVIDERS, hs(), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["secret_set"] is True and "secret" not in response.json()
    assert HS_SECRET not in api.get(PROVIDERS).content.decode()
    assert HS_SECRET not in api.get(PROVIDERS + "corp/").content.decode()
    # A PUT without the secret keeps it; with a new one replaces it.
    body = {k: v for k, v in hs(leeway_s=60).items() if k != "secret"}
    assert api.put(PROVIDERS + "corp/", body, format="json").status_code == 200
    assert JWTProvider.objects.get().secret == HS_SECRET
    assert api.put(PROVIDERS + "corp/", hs(secret="y" * 40), format="json").status_code == 200
    assert JWTProvider.objects.get().secret == "y" * 40
    audit = json.dumps(list(AuditEntry.objects.values("before", "after")))
    assert HS_SECRET not in audit and "y" * 40 not in audit
    assert AuditEntry.objects.filter(object_type="jwt-provider").count() == 3
    # Moved to RS256 with a JWKS URL (a local IdP over plain http is allowed).
    moved = rs(jwks=None, jwks_url="http://127.0.0.1:9999/jwks")
    response = api.put(PROVIDERS + "corp/", moved, format="json")
    assert response.status_code == 200, response.content
    assert JWTProvider.objects.get().secret == "" and response.json()["secret_set"] is False
    assert api.post(PROVIDERS, hs(), format="json").status_code == 409
    assert api.put(PROVIDERS + "corp/", hs(name="other"), format="json").status_code == 400
    assert api.delete(PROVIDERS + "corp/").status_code == 204
    assert api.put(PROVIDERS + "corp/", hs(), format="json").status_code == 404


def _ec_jwk() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}


def test_an_es256_provider_with_a_jwks(api: APIClient) -> None:
    jwks = {"keys": [_ec_jwk()]}
    response = api.post(PROVIDERS, rs(algorithms=["ES256"], jwks=jwks), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["jwks"] == jwks


def _rsa_jwk(kid: str, n_chars: int) -> dict[str, str]:
    return {"kty": "RSA", "kid": kid, "n": "s" * n_chars, "e": "AQAB"}


def test_an_inline_jwks_over_128_kib_is_a_400_and_a_big_real_one_fits(api: APIClient) -> None:
    """It rides in every gateway agent's snapshot: a 2 MB modulus was stored and sent.
    100 keys the size of RSA-4096 ones (683 base64url characters of modulus) fit."""
    fits = {"keys": [{**_rsa_jwk(f"k{i}", 683), "use": "sig", "alg": "RS256"} for i in range(100)]}
    assert 64 * 1024 < len(json.dumps(fits)) < 128 * 1024
    too_big = {"keys": [_rsa_jwk("k1", 2_000_000)]}
    response = api.post(PROVIDERS, rs(jwks=too_big), format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {"jwks": ["at most 131072 bytes as JSON; a larger key set: jwks_url"]}
    assert not JWTProvider.objects.exists() and not AuditEntry.objects.exists()
    assert api.post(PROVIDERS, rs(jwks=fits), format="json").status_code == 201
    response = api.put(PROVIDERS + "corp/", rs(jwks=too_big), format="json")
    assert response.status_code == 400, response.content[:300]
    assert JWTProvider.objects.get().jwks == fits


@pytest.mark.parametrize("url", [
    "https://idp.example.com:99999/jwks",
    "https://idp.example.com:0/jwks",
    "http://127.0.0.1:0/jwks",
    "https://idp.example.com:x/jwks",
])
def test_a_jwks_url_with_a_port_out_of_range_is_a_400(api: APIClient, url: str) -> None:
    response = api.post(PROVIDERS, rs(jwks=None, jwks_url=url), format="json")
    assert response.status_code == 400, response.content[:300]
    assert "port" in str(response.json()["jwks_url"])
    assert not JWTProvider.objects.exists()


@pytest.mark.parametrize(("key", "why"), [
    ({"kty": "EC", "crv": "P-256", "x": "f83O", "y": "x_FE"}, "32 bytes"),
    ({**_ec_jwk(), "crv": "P-999"}, "P-999"),
    ({**_ec_jwk(), "y": _ec_jwk()["x"]}, "keys[0]: not a usable EC public key"),
    ({"kty": "RSA", "n": "x", "e": "AQAB"}, "base64"),
])
def test_a_jwks_key_no_token_could_be_verified_with_is_a_400(
    api: APIClient, key: dict[str, str], why: str
) -> None:
    """The agent skipped such a key with a warning: the provider refused every token."""
    algorithms = ["ES256"] if key["kty"] == "EC" else ["RS256"]
    response = api.post(PROVIDERS, rs(algorithms=algorithms, jwks={"keys": [key]}), format="json")
    assert response.status_code == 400, response.content
    assert why in response.json()["jwks"][0]
    assert response.json()["jwks"][0].startswith("keys[0]: not a usable")
    assert not JWTProvider.objects.exists()
