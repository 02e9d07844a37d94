"""Service filters run in the database, with the same answers on SQLite and
PostgreSQL (run this file under both configurations)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from registry.models import Service
from registry.services import instance_register, service_create

pytestmark = pytest.mark.django_db


def make(name: str, tags: list[object], description: str = "") -> Service:
    return service_create(
        user=None,
        data={"name": name, "tags": tags, "description": description, "check_type": "none"},
    )


def names(queryset: object) -> list[str]:
    return sorted(s.name for s in queryset)  # type: ignore[attr-defined]


def test_tag_matches_whole_list_elements_only() -> None:
    make("alpha", ["blue", "pci"])
    make("beta", ["blueish"])
    make("gamma", ["Blue"])
    make("delta", [])
    assert names(Service.objects.with_tag("blue")) == ["alpha"]
    assert names(Service.objects.with_tag("pci")) == ["alpha"]
    assert names(Service.objects.with_tag("blu")) == []
    assert names(Service.objects.with_tag("Blue")) == ["gamma"]


def test_tag_with_quotes_backslashes_and_non_ascii() -> None:
    make("quoted", ['say "hi"', "back\\slash", "zoné", "日本"])
    make("plain", ["hi", "slash", "zone"])
    for tag in ('say "hi"', "back\\slash", "zoné", "日本"):
        assert names(Service.objects.with_tag(tag)) == ["quoted"], tag
    assert names(Service.objects.with_tag('"hi"')) == []


def test_tag_never_matches_a_number_or_its_text() -> None:
    make("numbers", [1, "2"])
    assert names(Service.objects.with_tag("1")) == []
    assert names(Service.objects.with_tag("2")) == ["numbers"]


def test_health_filter_counts_routable_instances() -> None:
    empty = make("empty", [])
    assert empty.pk
    some = make("some", [])
    instance_register(user=None, service=some, data={"address": "127.0.0.1", "port": 1})
    assert names(Service.objects.with_health("empty")) == ["empty"]
    # check_type none: a new instance is passing at once.
    assert names(Service.objects.with_health("passing")) == ["some"]
    assert names(Service.objects.annotate_health().with_health("critical")) == []


def test_search_is_case_insensitive_over_name_and_description() -> None:
    make("orders", [], description="Takes ORDERS")
    make("billing", [], description="invoices")
    assert names(Service.objects.matching("order")) == ["orders"]
    assert names(Service.objects.matching("INVOICE")) == ["billing"]


def test_tag_filter_is_one_query_not_a_scan_of_every_service(api: APIClient) -> None:
    for i in range(5):
        make(f"svc-{i}", ["even"] if i % 2 == 0 else ["odd"])
    api.get("/api/v1/services/")  # the token's last_used is written at most once a minute
    with CaptureQueriesContext(connection) as plain:
        assert api.get("/api/v1/services/").status_code == 200
    with CaptureQueriesContext(connection) as tagged:
        response = api.get("/api/v1/services/?tag=even&health=passing&search=svc")
    assert response.status_code == 200
    assert [s["name"] for s in response.json()["results"]] == []  # no instances: empty
    # Filtering adds no query (an empty page even saves the page and health queries).
    assert len(tagged.captured_queries) <= len(plain.captured_queries)
    response = api.get("/api/v1/services/?tag=even&health=empty&search=svc")
    assert [s["name"] for s in response.json()["results"]] == ["svc-0", "svc-2", "svc-4"]


def test_unknown_health_is_400_naming_the_choices(api: APIClient) -> None:
    response = api.get("/api/v1/services/?health=purple")
    assert response.status_code == 400
    assert "health" in response.json()
