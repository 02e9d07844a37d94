"""The services page labels each row as the overview does (operator states,
failover) for its own rows only: a page costs the same queries at any size."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from monitoring.topology import topology_nodes
from policies.models import FailoverState
from registry.models import AdminState, Health, Instance, Service

pytestmark = pytest.mark.django_db
ROW = re.compile(r'<tr data-service="([^"]+)".*?<span class="health ([a-z]+)">', re.S)


def seed(count: int) -> None:
    """Services in every state the label knows: passing, warning, critical,
    empty, all in maintenance, draining beside a passing one, failed over."""
    Service.objects.bulk_create(Service(name=f"svc-{i:04d}") for i in range(count))
    rows = []
    for i, service in enumerate(Service.objects.order_by("name")):
        kind = i % 7
        if kind == 3:
            continue  # empty
        healths = {0: [Health.PASSING] * 2, 1: [Health.PASSING, Health.CRITICAL],
                   2: [Health.CRITICAL]}.get(kind, [Health.PASSING, Health.PASSING])
        for j, health in enumerate(healths):
            admin = AdminState.ENABLED
            if kind == 4:
                admin = AdminState.MAINTENANCE
            elif kind == 5 and j == 1:
                admin = AdminState.DRAINING
            rows.append(Instance(service=service, address="10.0.0.1", port=1000 + j,
                                 health=health, admin_state=admin))
        if kind == 6:
            FailoverState.objects.create(service=service, active_target="svc-0000")
    Instance.objects.bulk_create(rows)


def page_rows(client: Client) -> tuple[dict[str, str], int]:
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/services/").content.decode()
    return dict(ROW.findall(html)), len(queries.captured_queries)


@pytest.mark.parametrize("size", [20, 200])
def test_each_row_has_the_overview_label(client: Client, admin_user: User, size: int) -> None:
    seed(size)
    client.force_login(admin_user)
    rows, _ = page_rows(client)
    overview = {node["name"]: node["state"] for node in topology_nodes()}
    assert len(rows) == min(size, 100)
    assert rows == {name: overview[name] for name in rows}
    assert {"passing", "warning", "critical", "empty", "maintenance", "failover"} <= set(
        rows.values()
    )


def test_a_page_costs_the_same_queries_with_20_and_200_services(
    client: Client, admin_user: User
) -> None:
    client.force_login(admin_user)
    seed(20)
    client.get("/services/")  # session and user loaded once, as any page
    _, small = page_rows(client)
    Instance.objects.all().delete()
    FailoverState.objects.all().delete()
    Service.objects.all().delete()
    seed(200)
    _, large = page_rows(client)
    assert large == small
    assert small <= 10


def test_a_page_reads_the_instances_of_its_own_rows_only(client: Client, admin_user: User) -> None:
    client.force_login(admin_user)
    seed(200)
    client.get("/services/")
    with CaptureQueriesContext(connection) as queries:
        client.get("/services/?page=2")
    instance_table = Instance._meta.db_table
    reads = [q["sql"] for q in queries.captured_queries if instance_table in q["sql"]]
    assert reads
    # Grouped over the page's 100 service ids, never over the whole registry.
    assert all(" IN (" in sql for sql in reads), reads
