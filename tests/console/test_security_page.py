"""The security page as drawn by the server: rules in the agents' order, the
default action, the CA roots, mTLS modes; write controls only for an unscoped admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from identity.intentions import intention_create
from meshconsole.models import Role
from meshconsole.roles import user_role_set
from registry import services

pytestmark = pytest.mark.django_db


def _rules(admin: User) -> None:
    intention_create(user=admin, data={"source": "*", "destination": "payments",
                                       "action": "deny", "http": None})
    intention_create(user=admin, data={"source": "orders", "destination": "payments",
                                       "action": "allow", "http": {"path_prefix": "/refund"}})
    intention_create(user=admin, data={"source": "web", "destination": "users",
                                       "action": "allow", "http": None})


def test_rules_are_listed_in_the_order_agents_evaluate_them(
    client: Client, admin_user: User
) -> None:
    _rules(admin_user)
    services.service_create(user=admin_user, data={"name": "payments", "mtls_mode": "strict"})
    client.force_login(admin_user)
    page = client.get("/security/").content.decode()
    order = [page.index(f"<code>{s}</code>") for s in ("orders", "web", "*")]
    assert order == sorted(order)  # exact before a wildcard source
    assert 'id="new-rule"' in page and "data-edit=" in page and 'id="default-switch"' in page
    assert 'data-action="allow"' in page  # the default
    assert "<b>1</b> strict" in page
    assert 'id="root-table"' in page and "built-in" in page


def test_the_filter_keeps_rules_naming_the_service(client: Client, admin_user: User) -> None:
    _rules(admin_user)
    client.force_login(admin_user)
    page = client.get("/security/?service=users").content.decode()
    assert "<code>web</code>" in page and "<code>orders</code>" not in page


@pytest.mark.parametrize("role, scope", [("viewer", ""), ("operator", ""), ("admin", "team=a")])
def test_others_see_the_rules_without_write_controls(
    client: Client, admin_user: User, viewer: User, role: str, scope: str
) -> None:
    _rules(admin_user)
    user_role_set(user=viewer, role=Role(role), scope=scope)
    client.force_login(viewer)
    page = client.get("/security/").content.decode()
    assert 'id="security-read-only"' in page
    assert "<code>orders</code>" in page
    for control in ('id="new-rule"', "data-edit=", "data-delete=", 'id="default-switch"',
                    'id="ca-rotate"', 'id="rule-dialog"'):
        assert control not in page
