"""DRF throttles keyed by meshconsole.clientaddr, never by a raw X-Forwarded-For.

DRF's own get_ident uses the whole X-Forwarded-For header when NUM_PROXIES is
unset, so a fresh header per request is a fresh bucket: every throttle of the
project derives from these classes instead.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from meshconsole.clientaddr import client_address


class ClientAddressAnonThrottle(AnonRateThrottle):
    def get_ident(self, request: Any) -> str:
        return client_address(request)


class ClientAddressUserThrottle(UserRateThrottle):
    def get_ident(self, request: Any) -> str:
        return client_address(request)
