from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.apps import AppConfig


class _Hook:
    """What agents.gateways asks of this app."""

    def declared(self, name: str) -> None:
        from gateway.services import gateway_ensure

        gateway_ensure(name)

    def targets(self, name: str) -> list[str]:
        from gateway.snapshot import gateway_targets

        return gateway_targets(name)

    def keys(self, name: str) -> list[str]:
        from gateway.snapshot import gateway_keys

        return gateway_keys(name)

    def section(self, name: str) -> Mapping[str, Any]:
        from gateway.snapshot import gateway_section

        return gateway_section(name)

    def keys_used(self, key_hashes: list[str], at: datetime) -> None:
        from gateway.services import consumer_keys_used

        consumer_keys_used(key_hashes=key_hashes, at=at)


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import gateways
        from gateway.services import service_referrers, subset_referrers
        from policies import services as policies
        from registry import services

        gateways.register(_Hook())
        # A service (or a subset of one) a gateway route sends to is not deleted
        # or renamed from under it (409).
        services.referrer_hooks["gateway"] = service_referrers
        policies.subset_referrer_hooks["gateway"] = subset_referrers
