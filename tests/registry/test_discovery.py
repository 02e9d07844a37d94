"""Discovery and its Consul-style blocking query."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import AsyncClient
from rest_framework.test import APIClient

from meshconsole.apitokens import api_token_create
from registry import services
from registry.models import MeshRevision, Service

pytestmark = pytest.mark.django_db(transaction=True)


def _register(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    api.post("/api/v1/services/payments/instances/", {"address": "10.0.0.1", "port": 80}, format="json")


def test_discovery_lists_healthy_endpoints_with_index_header(api: APIClient) -> None:
    _register(api)
    response = api.get("/api/v1/discovery/payments/")
    assert response.status_code == 200
    assert response["X-Mesh-Index"] == str(MeshRevision.current())
    assert [(e["address"], e["port"]) for e in response.json()["endpoints"]] == [("10.0.0.1", 80)]


def test_discovery_needs_credentials_and_known_service(api: APIClient, anon: APIClient) -> None:
    assert anon.get("/api/v1/discovery/payments/").status_code == 401
    assert api.get("/api/v1/discovery/payments/").status_code == 404


@pytest.mark.parametrize("query", ["index=abc", "index=-1", "index=1&wait=soon"])
def test_bad_blocking_parameters_are_400(api: APIClient, query: str) -> None:
    _register(api)
    response = api.get(f"/api/v1/discovery/payments/?{query}")
    assert response.status_code == 400


def test_blocking_query_times_out_with_same_index(api: APIClient) -> None:
    _register(api)
    index = MeshRevision.current()
    started = time.monotonic()
    response = api.get(f"/api/v1/discovery/payments/?index={index}&wait=1s")
    assert 0.9 <= time.monotonic() - started < 5
    assert response["X-Mesh-Index"] == str(index)


async def test_blocking_query_returns_within_a_second_of_a_change(admin_user) -> None:
    token = await sync_to_async(api_token_create)(user=admin_user)
    service = await sync_to_async(services.service_create)(user=admin_user, data={"name": "payments", "check_type": "none"})
    index = await sync_to_async(MeshRevision.current)()
    client = AsyncClient()
    headers = {"Authorization": f"Token {token}"}

    def change() -> float:
        # Another writer (a plain thread with its own connection), like another process.
        try:
            services.instance_register(
                user=admin_user, service=service, data={"address": "10.0.0.9", "port": 9}
            )
            return time.monotonic()
        finally:
            connection.close()

    async def change_later() -> float:
        await asyncio.sleep(0.5)
        return await asyncio.to_thread(change)

    waiter = asyncio.ensure_future(client.get(f"/api/v1/discovery/payments/?index={index}&wait=20s", headers=headers))
    changed_at = await change_later()
    response = await asyncio.wait_for(waiter, 10)
    answered_at = time.monotonic()
    assert response.status_code == 200
    assert int(response["X-Mesh-Index"]) > index
    assert [e["port"] for e in response.json()["endpoints"]] == [9]
    assert answered_at - changed_at < 1.0
    assert await sync_to_async(Service.objects.count)() == 1
