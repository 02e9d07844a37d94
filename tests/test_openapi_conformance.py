"""The OpenAPI schema tells the truth: schemathesis generates requests from
/api/schema/ and sends them to a real control plane (uvicorn on loopback, the
ASGI app, its own database) with a real API token, and checks that nothing
answers 5xx, every status code is documented and every response matches its
schema. Bounded: a fixed number of examples per operation, derandomized."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

EXAMPLES_PER_OPERATION = 8
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
KNOWN_SERVICE = "payments"
# Operations left out of the run (none: the agent report's 500 this run found,
# revisions past 64 bits, is a 400 now — tests/agents/test_report_bounds.py).
SKIPPED: set[tuple[str, str]] = set()


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Mesh:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        status, body = cp.api(
            "POST", "/api/v1/services/", {"name": KNOWN_SERVICE, "check": {"type": "none"}},
        )
        assert status == 201, body
        status, body = cp.api(
            "POST", f"/api/v1/services/{KNOWN_SERVICE}/instances/",
            {"address": "127.0.0.1", "port": 9},  # no node: "node" is null
        )
        assert status == 201, body
        self.instance_id = body["id"]
        status, body = http(
            "POST", f"{cp.url}/api/v1/agents/enroll/", {"token": cp.enroll_token, "node": "host-a"}
        )
        assert status == 201, body
        self.agent_id = body["agent_id"]
        self.agent_token = body["agent_token"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp_path: Path = tmp_path_factory.mktemp("openapi")
    # Blocking queries the fuzzer asks for return within a second.
    with _env(MESH_MAX_WAIT="1"), control_plane(tmp_path, workers=False) as cp:
        yield Mesh(cp)


def _aim(case: Any, mesh: Mesh) -> dict[str, str]:
    """Point some cases at objects that exist (a generated name almost never
    does) and give agent endpoints the agent's credentials; the headers."""
    params = case.path_parameters or {}
    if "agent_id" in params:
        params["agent_id"] = mesh.agent_id
        return {"Authorization": f"Agent {mesh.agent_token}"}
    known = len(repr(case.query)) % 2 == 0
    if known and case.method.upper() != "DELETE":
        # (DELETE keeps generated names: the known objects stay for the other cases.)
        if "name" in params:
            params["name"] = KNOWN_SERVICE
        if "service_name" in params:
            params["service_name"] = KNOWN_SERVICE
            if "id" in params:
                params["id"] = mesh.instance_id
    return {"Authorization": f"Token {mesh.cp.token}"}


def test_api_answers_as_its_schema_says(mesh: Mesh) -> None:
    api = schemathesis.openapi.from_url(f"{mesh.cp.url}/api/schema/?format=json")
    sent = 0

    for result in api.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal sent
            headers = _aim(case, mesh)
            sent += 1
            # A failed check raises schemathesis' FailureGroup with a curl line to
            # reproduce it.
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)

        run()

    print(f"schemathesis: {sent} requests")
    assert sent > 200
