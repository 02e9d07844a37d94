"""Renewer: when a leaf is due, what a bundle change renews, and that a failed renewal
keeps the old certificate serving."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.client import ControlPlaneClient, ControlPlaneError
from agents.runtime.renewal import Renewer
from agents.runtime.security import service_identity
from tests.agents.testca import TD, TestCA, store_with

pytestmark = pytest.mark.timeout(20)


class FakeClient(ControlPlaneClient):
    def __init__(self, ca: TestCA, *, fail: bool = False) -> None:
        super().__init__("http://127.0.0.1:1")
        self.ca, self.fail, self.asked = ca, fail, []  # type: ignore[var-annotated]

    async def certificate(self, agent_id: str, token: str, service: str,
                          csr: str) -> dict[str, Any]:
        self.asked.append(service)
        if self.fail:
            raise ControlPlaneError("certificates: 503", 503)
        return {"certificate": self.ca.sign_csr(csr, service_identity(TD, service), 60),
                "chain": [], "roots": [self.ca.pem]}


def test_renewal_is_due_at_about_half_the_lifetime(tmp_path: Path) -> None:
    ca = TestCA()
    store = store_with(tmp_path, ["orders"], ca, valid_s=1000)
    renewer = Renewer(store, FakeClient(ca), "host-a", lambda: TD, lambda: None)
    leaf = store.leaves["orders"]
    share = (renewer.due["orders"] - leaf.not_before).total_seconds() / leaf.lifetime_s
    assert 0.45 <= share <= 0.55


async def test_a_dropped_root_renews_only_the_leaves_it_signed(tmp_path: Path) -> None:
    old, new = TestCA("old"), TestCA("new")
    store = store_with(tmp_path, ["orders", "billing"], old, roots=[old.pem, new.pem])
    client = FakeClient(new)
    renewer = Renewer(store, client, "host-a", lambda: TD, lambda: None)
    await renewer.renew("billing", "id", "token")  # billing now comes from the new root
    store.set_roots([new.pem])
    renewer.bundle_changed(added=False)
    now = dt.datetime.now(dt.UTC)
    assert renewer.due["orders"] <= now + dt.timedelta(seconds=2.1)
    assert renewer.due["billing"] > now + dt.timedelta(seconds=20)


async def test_a_failed_renewal_keeps_the_old_certificate_and_retries(tmp_path: Path) -> None:
    ca = TestCA()
    store = store_with(tmp_path, ["orders"], ca)
    serial = store.leaves["orders"].serial
    client = FakeClient(ca, fail=True)
    renewer = Renewer(store, client, "host-a", lambda: TD, lambda: None)
    renewer.renew_soon()
    task = asyncio.create_task(renewer.run("id", "token"))
    await asyncio.sleep(2.5)
    task.cancel()
    assert client.asked and store.leaves["orders"].serial == serial
    assert "503" in renewer.errors["orders"]
    assert store.client_context("orders") is not None  # still serving
