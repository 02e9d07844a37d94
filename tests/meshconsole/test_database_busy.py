"""A busy database (no pooled connection in time, SQLite's lock not in time) is a
503 with Retry-After on the agent endpoints, not a 500 (meshconsole.api.database_busy)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from psycopg_pool import PoolTimeout

from agents.api.views import EnrollThrottle
from meshconsole.api import database_busy
from tests.agents.test_api_agents import SERVICES, enroll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enroll_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EnrollThrottle, "allow_request", lambda self, request, view: True)


def _pool_timeout() -> OperationalError:
    exc = OperationalError("couldn't get a connection after 10.00 sec")
    exc.__cause__ = PoolTimeout("couldn't get a connection after 10.00 sec")
    return exc


def _raise(exc: BaseException) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return run


def test_a_report_without_a_pooled_connection_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    client, body = enroll()
    monkeypatch.setattr("agents.api.views.agent_report", _raise(_pool_timeout()))
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/",
                           {"services": SERVICES}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["detail"].startswith("The database is busy")


def test_a_config_read_on_a_locked_sqlite_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    client, body = enroll()
    monkeypatch.setattr("agents.api.views.agent_snapshot",
                        _raise(OperationalError("database is locked")))
    response = client.get(f"/api/v1/agents/{body['agent_id']}/config/")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"


def test_other_database_errors_are_not_called_busy() -> None:
    assert database_busy(OperationalError("no such table: registry_service")) is None
    assert database_busy(ValueError("database is locked")) is None
    assert database_busy(_pool_timeout()) is not None


@pytest.mark.parametrize("error", ["DeadlockDetected", "SerializationFailure", "LockNotAvailable"])
def test_a_transaction_postgresql_aborted_is_503_and_can_be_retried(
        monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    import psycopg.errors

    exc = OperationalError("deadlock detected")
    exc.__cause__ = getattr(psycopg.errors, error)("aborted")
    assert database_busy(exc) is not None
    client, body = enroll()
    monkeypatch.setattr("agents.api.views.agent_report", _raise(exc))
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"


def test_a_postgresql_error_that_is_not_transient_is_not_called_busy() -> None:
    import psycopg.errors

    exc = OperationalError("disk full")
    exc.__cause__ = psycopg.errors.DiskFull("disk full")
    assert database_busy(exc) is None
