"""The tags of the service a request acts on, for roles scoped by tag
(meshconsole.roles): a scoped operator or admin acts only where the tag is."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from registry.models import Service


class ServiceScoped:
    """Mixed into a view whose URL names a service (`service_kwarg`)."""

    service_kwarg = "name"
    # The body's "tags" are the service's own (the services viewset), not an
    # instance's or a policy's.
    body_tags_are_the_services = False
    kwargs: dict[str, Any]

    def scope_tags(self, request: Request) -> list[str] | None:
        name = self.kwargs.get(self.service_kwarg)
        if name is None:
            # A service being created: the tags it will carry.
            tags = request.data.get("tags") if isinstance(request.data, dict) else None
            return [str(t) for t in tags] if isinstance(tags, list) else []
        stored = Service.objects.filter(name=name).values_list("tags", flat=True).first()
        if stored is None:
            return None
        tags = [str(t) for t in stored or []]
        new = request.data.get("tags") if isinstance(request.data, dict) else None
        if isinstance(new, list) and self.body_tags_are_the_services:
            # A change of the service's tags must keep it in scope: the scope
            # tag has to be on the service both before and after.
            return [t for t in tags if t in {str(n) for n in new}]
        return tags
