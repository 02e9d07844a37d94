"""The service page shows the service's subsets and routes, read-only, escaped."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from policies.routes import routes_validate
from policies.services import routes_update
from registry import services
from registry.models import Service

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


def test_a_service_without_routes_says_so(logged_in: Client) -> None:
    services.service_create(user=None, data={"name": "payments", "check_type": "none"})
    html = logged_in.get("/services/payments/").content.decode()
    assert 'id="routes-card"' in html and "every request goes to the whole service" in html
    assert 'id="route-table"' not in html


def test_the_service_page_lists_subsets_and_routes_in_order(logged_in: Client) -> None:
    payments = services.service_create(user=None, data={"name": "payments", "check_type": "none"})
    services.service_create(user=None, data={"name": "payments-next", "check_type": "none"})
    document = routes_validate(payments, {
        "subsets": {"v1": {"tags": ["v1"]}, "v2": {"metadata": {"track": "<b>canary</b>"}}},
        "routes": [
            {"name": "canary", "match": {"path": {"prefix": "/api"}, "methods": ["GET"],
                                         "headers": [{"name": "x-user", "present": True}]},
             "split": [{"subset": "v1", "weight": 3}, {"subset": "v2", "weight": 1},
                       {"service": "payments-next", "weight": 0}],
             "sticky": {"cookie": "session"}, "timeout_ms": 900},
            {"name": "rest", "split": [{"subset": "v1", "weight": 1}]},
        ],
    })
    routes_update(user=None, service=Service.objects.get(name="payments"), document=document)
    html = logged_in.get("/services/payments/").content.decode()
    assert "v1 · evaluated in order" in html
    assert "track=&lt;b&gt;canary&lt;/b&gt;" in html and "<b>canary</b>" not in html
    assert html.index("<td>canary</td>") < html.index("<td>rest</td>")
    assert "path prefix /api · GET · header x-user present" in html
    assert "v1 75% · v2 25% · → payments-next 0%" in html
    assert "sticky cookie session" in html and "timeout 900ms" in html
