"""Lists that can be long are pages: {"count", "next", "previous", "results"};
a page of services costs the same number of queries whatever its size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import EnrollmentToken
from journal.models import Event
from registry.models import AdminState, Health, Instance, Service

pytestmark = pytest.mark.django_db


def seed(services: int, instances_each: int = 2, tags: list[str] | None = None) -> None:
    Service.objects.bulk_create(
        Service(name=f"svc-{i:04d}", tags=tags if i % 2 == 0 and tags else []) for i in range(services)
    )
    rows = []
    for service in Service.objects.all():
        for j in range(instances_each):
            rows.append(Instance(service=service, address="10.0.0.1", port=1000 + j,
                                 health=Health.PASSING if j == 0 else Health.CRITICAL,
                                 admin_state=AdminState.ENABLED))
    Instance.objects.bulk_create(rows)


def test_services_list_is_a_page_of_100_by_default(api: APIClient) -> None:
    seed(130)
    body = api.get("/api/v1/services/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 130 and len(body["results"]) == 100 and body["previous"] is None
    assert body["results"][0]["name"] == "svc-0000"
    assert body["results"][0]["health"] == {"passing": 1, "total": 2}
    second = api.get(body["next"]).json()
    assert [s["name"] for s in second["results"]] == [f"svc-{i:04d}" for i in range(100, 130)]
    assert second["next"] is None and second["previous"] is not None


def test_page_size_goes_up_to_1000(api: APIClient) -> None:
    seed(3, instances_each=0)
    assert len(api.get("/api/v1/services/?page_size=2").json()["results"]) == 2
    assert len(api.get("/api/v1/services/?page_size=5000").json()["results"]) == 3
    from meshconsole.api import MeshPagination

    assert MeshPagination.max_page_size == 1000
    assert api.get("/api/v1/services/?page=9").status_code == 404


def test_a_page_of_services_costs_a_constant_number_of_queries(api: APIClient) -> None:
    seed(5)
    api.get("/api/v1/services/")  # the token's last_used is written at most once a minute
    with CaptureQueriesContext(connection) as small:
        assert len(api.get("/api/v1/services/").json()["results"]) == 5
    Service.objects.all().delete()
    seed(100, instances_each=3)
    with CaptureQueriesContext(connection) as full:
        assert len(api.get("/api/v1/services/").json()["results"]) == 100
    with CaptureQueriesContext(connection) as tagged:
        api.get("/api/v1/services/?tag=x")
    assert len(full) == len(small)
    assert len(tagged) <= len(small)


def test_health_of_a_page_matches_the_filter(api: APIClient) -> None:
    seed(4)
    Instance.objects.filter(service__name="svc-0001").update(health=Health.PASSING)
    Instance.objects.filter(service__name="svc-0002").delete()
    body = api.get("/api/v1/services/").json()
    health = {s["name"]: s["health"] for s in body["results"]}
    assert health["svc-0001"] == {"passing": 2, "total": 2}
    assert health["svc-0002"] == {"passing": 0, "total": 0}
    passing = api.get("/api/v1/services/?health=passing").json()
    assert [s["name"] for s in passing["results"]] == ["svc-0001"] and passing["count"] == 1
    warning = api.get("/api/v1/services/?health=warning").json()
    assert [s["name"] for s in warning["results"]] == ["svc-0000", "svc-0003"]


def test_tag_filter_runs_in_the_database_and_matches_whole_tags(api: APIClient) -> None:
    seed(6, instances_each=0, tags=["blue", "x"])
    Service.objects.create(name="bluish", tags=["blue-ish", "xblue"])
    body = api.get("/api/v1/services/?tag=blue").json()
    assert [s["name"] for s in body["results"]] == ["svc-0000", "svc-0002", "svc-0004"]
    assert body["count"] == 3


def test_instances_of_a_service_are_paged(api: APIClient) -> None:
    seed(1, instances_each=0)
    service = Service.objects.get()
    Instance.objects.bulk_create(
        Instance(service=service, address="10.0.0.2", port=2000 + i) for i in range(105)
    )
    body = api.get("/api/v1/services/svc-0000/instances/").json()
    assert body["count"] == 105 and len(body["results"]) == 100
    assert [i["port"] for i in api.get(body["next"]).json()["results"]] == list(range(2100, 2105))


def test_events_are_paged_with_limit_as_the_page_size(api: APIClient) -> None:
    Event.objects.bulk_create(Event(kind="config", message=f"e{i}") for i in range(250))
    body = api.get("/api/v1/events/").json()
    assert body["count"] == 250 and len(body["results"]) == 200 and body["next"]
    assert len(api.get("/api/v1/events/?limit=20").json()["results"]) == 20
    assert api.get("/api/v1/events/?limit=0").status_code == 400
    assert api.get("/api/v1/events/?limit=1001").status_code == 400


def test_agents_and_enrollment_tokens_are_paged(api: APIClient) -> None:
    for i in range(3):
        api.post("/api/v1/agents/enrollment-tokens/", {"description": f"t{i}"}, format="json")
    body = api.get("/api/v1/agents/enrollment-tokens/?page_size=2").json()
    assert body["count"] == EnrollmentToken.objects.count() and len(body["results"]) == 2
    assert body["next"]
    agents = api.get("/api/v1/agents/").json()
    assert set(agents) == {"count", "next", "previous", "results"}


def test_health_filter_probes_instances_instead_of_grouping_them_all(api: APIClient) -> None:
    seed(5)  # svc-0000..4: one passing, one critical -> warning
    Instance.objects.filter(service__name="svc-0001").update(health=Health.PASSING)
    Instance.objects.filter(service__name="svc-0002").update(health=Health.CRITICAL)
    Instance.objects.filter(service__name="svc-0003", port=1001).update(
        health=Health.PASSING, admin_state=AdminState.MAINTENANCE
    )  # passing but held out: not routable
    Instance.objects.filter(service__name="svc-0004").delete()
    expected = {"passing": ["svc-0001"], "warning": ["svc-0000", "svc-0003"],
                "critical": ["svc-0002"], "empty": ["svc-0004"]}
    for health, names in expected.items():
        with CaptureQueriesContext(connection) as queries:
            body = api.get(f"/api/v1/services/?health={health}").json()
        assert [s["name"] for s in body["results"]] == names and body["count"] == len(names)
        grouped = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"]]
        assert len(grouped) <= 1  # only the page's own health (attach_health)
