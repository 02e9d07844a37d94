"""A service as the REST API shows it, with its instances: what the console's
service page renders first and what its websocket then pushes
(monitoring.consumers), so both read it from here."""

from __future__ import annotations

from typing import Any

from registry.api.serializers import InstanceSerializer, ServiceSerializer
from registry.models import Instance, Service


def service_payload(name: str) -> dict[str, Any] | None:
    """ServiceSerializer's shape plus "instances"; None if there is no such service."""
    service = Service.objects.annotate_health().filter(name=name).first()
    if service is None:
        return None
    data: dict[str, Any] = dict(ServiceSerializer(service).data)
    instances = Instance.objects.filter(service=service).select_related("service", "node")
    data["instances"] = [dict(row) for row in InstanceSerializer(instances, many=True).data]
    return data
