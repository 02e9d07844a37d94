"""A policy write and what it implies: the panic flag follows a new threshold at
once, and the optimistic version check holds against concurrent writers."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from rest_framework.test import APIClient

from journal.models import Event, EventKind
from meshconsole.apitokens import api_token_create
from policies.models import TrafficPolicy
from policies.services import StaleVersion, policy_update
from registry.models import Service
from registry.panic import panic_state
from tests.policies.helpers import instance, service

URL = "/api/v1/services/payments/policy/"


@pytest.mark.django_db
def test_raising_the_panic_threshold_puts_the_service_in_panic_at_once(api: APIClient) -> None:
    payments = service("payments")
    for port, health in ((1, "passing"), (2, "passing"), (3, "critical"), (4, "critical")):
        instance(payments, port, health=health)
    # 2 of 4 healthy is not below 50 %: not in panic.
    api.patch(URL, {"panic_threshold_percent": 50}, format="json")
    payments.refresh_from_db()
    assert not payments.in_panic and not panic_state(payments).in_panic

    response = api.patch(URL, {"panic_threshold_percent": 80}, format="json")

    assert response.status_code == 200, response.content
    payments.refresh_from_db()
    assert panic_state(payments).in_panic
    assert payments.in_panic  # the stored flag the console and explanations read
    event = Event.objects.filter(kind=EventKind.HEALTH, service="payments").first()
    assert event is not None and "panic mode" in event.message
    assert event.data["threshold"] == 80

    api.patch(URL, {"panic_threshold_percent": 50}, format="json")
    payments.refresh_from_db()
    assert not payments.in_panic


@pytest.mark.django_db
def test_a_stale_expected_version_is_refused_under_the_lock() -> None:
    payments = service("payments")
    policy_update(user=None, service=payments, data={"load_balancer": "random"})
    with pytest.raises(StaleVersion):
        policy_update(
            user=None, service=payments, data={"load_balancer": "maglev"}, expected_version=0
        )
    assert TrafficPolicy.objects.get().load_balancer == "random"


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_patches_with_one_version_get_exactly_one_409() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent writers (PostgreSQL)")
    payments = service("payments")
    user = User.objects.create_superuser("alice", "alice@example.com", "alice-password-1")
    key = api_token_create(user=user)
    first = APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert first.patch(URL, {"load_balancer": "random"}, format="json").status_code == 200
    version = TrafficPolicy.objects.get().version
    statuses: list[int] = []

    def patch(balancer: str) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            response = client.patch(
                URL, {"version": version, "load_balancer": balancer}, format="json"
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    # Hold the policy row so both writers have read the version before either
    # can write; then let them go one after the other through the lock.
    holder_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(TrafficPolicy.objects.select_for_update().filter(service=payments))
                holder_ready.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holder_ready.wait(10)
    writers = [threading.Thread(target=patch, args=(b,)) for b in ("least_request", "maglev")]
    for t in writers:
        t.start()
    deadline = time.monotonic() + 10
    while _lock_waiters() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    for t in (holder, *writers):
        t.join(15)

    assert sorted(statuses) == [200, 409]
    policy = TrafficPolicy.objects.get()
    assert policy.version == version + 1
    assert Service.objects.get(name="payments").policy.load_balancer in ("least_request", "maglev")
