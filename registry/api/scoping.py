"""The tags of the service a request acts on, for roles scoped by tag
(meshconsole.roles): a scoped operator or admin acts only where the tag is."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from meshconsole.roles import grant_of
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


def split_services(document: dict[str, Any]) -> set[str]:
    """The other services a routes document sends traffic to (split targets)."""
    return {
        str(target["service"])
        for route in document.get("routes", [])
        for target in route.get("split", [])
        if isinstance(target, dict) and target.get("service")
    }


def refuse_out_of_scope(
    request: Request, field: str, names: set[str], already: Iterable[str] = ()
) -> None:
    """A role scoped to a tag may send its service's traffic elsewhere (failover
    targets, split services) only to services in its scope: 403 naming the others.
    ALREADY (what the stored document names) stays allowed, so another field of a
    document an unscoped admin pointed out of scope can still be edited."""
    grant = grant_of(request.user, request.auth)
    added = names - set(already)
    if grant is None or not grant.scope or not added:
        return
    tagged = {
        name for name, tags in Service.objects.filter(name__in=added).values_list("name", "tags")
        if grant.scope in (tags or [])
    }
    outside = sorted(added - tagged)
    if outside:
        raise PermissionDenied({
            field: [f"outside your scope ({grant.scope}): {', '.join(outside)}"],
            "detail": f"your role is scoped to {grant.scope}: it may not send traffic to "
                      f"{', '.join(outside)}",
        })
