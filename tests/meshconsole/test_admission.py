"""Admission control of the agent protocol's writes (meshconsole/admission.py):
a bounded number run, a bounded number wait without a thread, the rest are 503
with Retry-After at once; nothing else is held back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from meshconsole import admission

AGENT = "0f8fad5b-d9cb-469f-a165-70867728950e"
REPORT = f"/api/v1/agents/{AGENT}/report/"


class Held:
    """A view that holds every request until released, counting those inside."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return HttpResponse("ok")


def chain(view: Held) -> admission.AgentAdmissionMiddleware:
    async def get_response(request: HttpRequest) -> HttpResponse:
        return await view(request)

    return admission.AgentAdmissionMiddleware(get_response)


def post(path: str) -> HttpRequest:
    return RequestFactory().post(path, data=b"{}", content_type="application/json")


@pytest.fixture(autouse=True)
def small_gate(settings: Any) -> None:
    settings.MESH_AGENT_CONCURRENCY = 3
    settings.MESH_AGENT_QUEUE = 4


async def test_past_the_running_and_waiting_bounds_agents_get_503_at_once() -> None:
    view = Held()
    middleware = chain(view)
    paths = [REPORT, "/api/v1/agents/enroll/", f"/api/v1/agents/{AGENT}/certificates/"]
    tasks = [asyncio.create_task(middleware(post(paths[i % 3]))) for i in range(9)]
    await asyncio.sleep(0.1)
    assert view.inside == 3  # MESH_AGENT_CONCURRENCY
    refused = [t for t in tasks if t.done()]
    assert len(refused) == 2  # 9 - 3 running - 4 waiting
    for task in refused:
        response = task.result()
        assert response.status_code == 503
        assert 1 <= int(response["Retry-After"]) <= 3
        assert b"busy" in response.content
    # Other requests are not held back, even now.
    other = admission.AgentAdmissionMiddleware(_ok)
    for request in (RequestFactory().get(f"/api/v1/agents/{AGENT}/config/"),
                    post("/api/v1/services/"), post(f"/api/v1/agents/{AGENT}/report/x/")):
        assert (await other(request)).status_code == 200
    view.release.set()
    answers = await asyncio.gather(*tasks)
    assert sorted(r.status_code for r in answers) == [200] * 7 + [503] * 2
    assert view.most == 3


async def test_a_request_that_waited_too_long_is_refused_not_run(monkeypatch: Any) -> None:
    monkeypatch.setattr(admission, "QUEUE_WAIT_S", 0.2)
    view = Held()
    middleware = chain(view)
    running = [asyncio.create_task(middleware(post(REPORT))) for _ in range(3)]
    await asyncio.sleep(0.05)
    late = await middleware(post(REPORT))
    assert late.status_code == 503
    view.release.set()
    assert [r.status_code for r in await asyncio.gather(*running)] == [200] * 3
    assert view.inside == 0
    assert (await middleware(post(REPORT))).status_code == 200  # the slots came back


async def _ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def test_the_middleware_is_in_the_chain_before_sessions_and_auth() -> None:
    chain = settings.MIDDLEWARE
    ours = chain.index("meshconsole.admission.AgentAdmissionMiddleware")
    assert ours < chain.index("django.contrib.sessions.middleware.SessionMiddleware")
