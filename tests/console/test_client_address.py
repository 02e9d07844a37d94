"""One rule for a request's client address: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from meshconsole.clientaddr import client_address_from

PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::1")]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "", "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        # The client wrote the leftmost entries itself; the rightmost untrusted hop is real.
        ("10.0.0.2", "1.1.1.1, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.7", "198.51.100.1"),
        ("10.0.0.2", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # every hop trusted: the first
        ("10.0.0.2", "garbage, 10.0.0.7", "10.0.0.7"),
        ("10.0.0.2", "198.51.100.1:4711", "198.51.100.1"),
        ("10.0.0.2", "[2001:db8::5]:4711", "2001:db8::5"),
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("fd00::2", "198.51.100.1", "fd00::2"),
    ],
)
def test_client_address(peer: str, xff: str, expected: str) -> None:
    assert client_address_from(peer, xff, PROXIES) == expected


def test_no_trusted_proxies_by_default() -> None:
    assert client_address_from("127.0.0.1", "198.51.100.1", []) == "127.0.0.1"


@pytest.fixture
def fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _enroll_attempts(client: APIClient, n: int, **extra: Any) -> list[int]:
    codes = []
    for i in range(n):
        headers = {"HTTP_X_FORWARDED_FOR": f"198.51.100.{i % 250 + 1}", **extra}
        response = client.post(
            "/api/v1/agents/enroll/", {"token": "nope", "node": "host-a"}, format="json", **headers
        )
        codes.append(response.status_code)
    return codes


@pytest.mark.django_db
def test_spoofed_forwarded_for_from_an_untrusted_peer_still_trips_the_throttle(
    fresh_throttles: None,
) -> None:
    codes = _enroll_attempts(APIClient(), 61)
    assert codes[:60] == [403] * 60
    assert codes[60] == 429


@pytest.mark.django_db
def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    fresh_throttles: None, settings: Any
) -> None:
    settings.MESH_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.0/8")]
    # Each request comes from another client behind the proxy: no bucket fills up.
    assert set(_enroll_attempts(APIClient(), 61)) == {403}
    # One client behind the proxy is throttled like a direct one.
    codes = _enroll_attempts(APIClient(), 61, HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.77")
    assert codes[60] == 429
