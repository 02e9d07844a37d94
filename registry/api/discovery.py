"""Discovery: healthy endpoints of a service, with Consul-style blocking."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotAuthenticated, NotFound

from meshconsole.apitokens import ApiTokenAuthentication
from meshconsole.longpoll import (
    authenticate,
    blocking_params,
    db_step,
    error_response,
    watcher,
)
from registry.models import Instance, MeshIndex, Service, service_key


def discovery_payload(name: str) -> dict[str, Any]:
    service = Service.objects.filter(name=name).first()
    if service is None:
        raise NotFound(f"no service named {name!r}")
    instances = Instance.objects.filter(service=service).routable().order_by("address", "port")
    return {
        "service": service.name,
        "protocol": service.protocol,
        # The index of this answer (the service's last change), Consul-style.
        "revision": MeshIndex.of([service_key(service.name)]),
        "endpoints": [
            {
                "id": i.id,
                "address": i.address,
                "port": i.port,
                "zone": i.zone,
                "weight": i.weight,
                "tags": i.tags,
                "metadata": i.metadata,
                "status": i.status,
            }
            for i in instances
        ],
    }


@require_GET
async def discovery_view(request: HttpRequest, name: str) -> JsonResponse:
    try:
        user, _ = await authenticate(request, [ApiTokenAuthentication(), SessionAuthentication()])
        if not user or not user.is_authenticated:
            raise NotAuthenticated()
        index, wait = blocking_params(request)
        if index is not None:
            keys = [service_key(name)]
            await watcher().wait_for(index, wait, keys=keys, read=lambda: MeshIndex.of(keys))
        payload = await db_step(lambda: discovery_payload(name))
    except APIException as exc:
        return error_response(exc)
    response = JsonResponse(payload)
    response["X-Mesh-Index"] = str(payload["revision"])
    return response
