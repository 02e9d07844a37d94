"""What the signed-in person may do on the page being drawn, for templates and
scripts to hide or disable write controls (the API enforces it either way:
meshconsole.roles.RolePermission)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from meshconsole.roles import ADMIN, OPERATOR, grant_of
from registry.models import Service


def _page_service_tags(request: HttpRequest) -> list[str] | None:
    match = request.resolver_match
    name = match.kwargs.get("name") if match is not None else None
    if name is None:
        return None
    tags = Service.objects.filter(name=name).values_list("tags", flat=True).first()
    return [str(t) for t in tags or []] if tags is not None else None


def role_context(request: HttpRequest) -> dict[str, Any]:
    """`mesh_grant`, `can_operate` and `can_admin` (on the page's service, if any)."""
    user = getattr(request, "user", None)
    grant = grant_of(user)
    if grant is None:
        return {"mesh_grant": None, "can_operate": False, "can_admin": False}
    tags = _page_service_tags(request) if grant.scope else None
    return {
        "mesh_grant": grant,
        "can_operate": grant.allows(OPERATOR, tags),
        "can_admin": grant.allows(ADMIN, tags),
    }
