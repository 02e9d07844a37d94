"""Roles: who may do what, the one home of the rule (docs/security.md).

viewer < operator < admin. Reads need viewer and are global; a write needs the
role its view declares and, for a role scoped to a tag (`team=payments`), a
service carrying that tag. Views declare what they need (`roles`, keyed by
viewset action or HTTP method); a view or verb that declares nothing is
refused: deny by default. An API token acts with its user's role, a read-only
token as a viewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import transaction
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from journal.records import audit_record
from meshconsole.models import ApiToken, Role, UserRole

VIEWER = Role.VIEWER
OPERATOR = Role.OPERATOR
ADMIN = Role.ADMIN
_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}

# What a read-only view declares.
READ: Mapping[str, Role] = {"GET": VIEWER, "HEAD": VIEWER, "OPTIONS": VIEWER}
# Tokens, users and agents' credentials: admin even to read.
ADMIN_ONLY: Mapping[str, Role] = {
    m: ADMIN for m in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
}
# A viewset's read actions.
READ_ACTIONS: Mapping[str, Role] = {"list": VIEWER, "retrieve": VIEWER, "metadata": VIEWER}


@dataclass(frozen=True)
class Grant:
    role: Role
    scope: str = ""  # a service tag; "" = every service

    def allows(self, needed: Role, tags: list[str] | None = None) -> bool:
        """May this grant act at NEEDED on a service with TAGS (None: nothing
        service-specific, e.g. a mesh apply)? Reads are global."""
        if _RANK[self.role] < _RANK[needed]:
            return False
        if needed == VIEWER or not self.scope:
            return True
        return tags is not None and self.scope in tags


def grant_of(user: Any, auth: Any = None) -> Grant | None:
    """The grant of USER (None: nobody, e.g. anonymous or an agent). AUTH is the
    request's credential: a read-only API token caps the grant at viewer."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    grant = getattr(user, "_mesh_grant", None)
    if grant is None:
        if user.is_superuser:
            grant = Grant(ADMIN)
        else:
            row = UserRole.objects.filter(user=user).first()
            grant = Grant(Role(row.role), row.scope) if row else Grant(VIEWER)
        user._mesh_grant = grant
    if isinstance(auth, ApiToken) and auth.read_only:
        return Grant(VIEWER, grant.scope)
    return grant


def user_role_set(*, user: Any, role: Role, scope: str = "", by: Any = None) -> UserRole:
    """Give USER ROLE (scoped to SCOPE), audited as BY's write (None: the system)."""
    with transaction.atomic():
        row = UserRole.objects.select_for_update().filter(user=user).first()
        before = {"role": row.role, "scope": row.scope} if row else None
        row, _ = UserRole.objects.update_or_create(
            user=user, defaults={"role": role, "scope": scope}
        )
        audit_record(
            user=by,
            action="update" if before else "create",
            object_type="role",
            object_id=user.get_username(),
            before=before,
            after={"role": str(role), "scope": scope},
        )
    user.__dict__.pop("_mesh_grant", None)
    return row


class ScopedView(Protocol):
    """A view acting on one service says which tags it carries (None: no such service)."""

    def scope_tags(self, request: Request) -> list[str] | None: ...


def needed_role(request: Request, view: Any) -> Role | None:
    """What VIEW declares for this request (None: nothing, so refused)."""
    declared: Mapping[str, Role] = getattr(view, "roles", {})
    action = getattr(view, "action", None)
    if action is not None and action in declared:
        return declared[action]
    method = request.method or ""
    if method == "OPTIONS":
        return VIEWER  # the view's metadata: a read
    if method == "HEAD" and method not in declared:
        method = "GET"
    return declared.get(method)


def _serves(request: Request, view: Any) -> bool:
    method = (request.method or "").lower()
    return method in view.http_method_names and getattr(view, method, None) is not None


class RolePermission(BasePermission):
    """The API's default permission: the view's declared role, deny by default."""

    message = "your role does not allow this"

    def has_permission(self, request: Request, view: Any) -> bool:
        grant = grant_of(request.user, request.auth)
        if grant is None:
            return False  # DRF answers 401 to the unauthenticated, 403 otherwise
        if not _serves(request, view):
            return True  # nothing runs: the view answers 405
        needed = needed_role(request, view)
        if needed is None:
            return False
        if needed == VIEWER or not grant.scope:
            return grant.allows(needed)
        scope_tags = getattr(view, "scope_tags", None)
        return grant.allows(needed, scope_tags(request) if scope_tags else None)
