"""Small builders shared by the policy tests."""

from __future__ import annotations

from registry import services as registry_services
from registry.models import Instance, Service


def service(name: str) -> Service:
    return registry_services.service_create(user=None, data={"name": name, "check_type": "none"})


def instance(svc: Service, port: int, *, zone: str = "zone-1", health: str = "passing") -> Instance:
    created = registry_services.instance_register(
        user=None, service=svc, data={"address": "10.0.0.1", "port": port, "zone": zone}
    )
    Instance.objects.filter(pk=created.pk).update(health=health)
    created.refresh_from_db()
    return created


def set_health(svc: Service, health: str) -> None:
    Instance.objects.filter(service=svc).update(health=health)
