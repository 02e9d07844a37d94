"""Root rotation and retirement: the bundle carries old + new, retirement waits for live leaves."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import Agent
from agents.snapshot import agent_snapshot
from identity.models import CARoot
from tests.identity.helpers import ask, enrolled_agent

pytestmark = pytest.mark.django_db

PAYMENTS = [{"name": "payments", "address": "127.0.0.1", "port": 8080}]


def _issuer_fp(body: dict[str, object]) -> str:
    leaf = x509.load_pem_x509_certificate(str(body["certificate"]).encode())
    for pem in body["roots"]:  # type: ignore[attr-defined]
        root = x509.load_pem_x509_certificate(pem.encode())
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return CARoot.objects.get(certificate=pem).fingerprint
    raise AssertionError("no root of the bundle verifies the leaf")


def test_rotation_adds_a_signer_keeps_the_old_root_and_bumps_every_agent(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    first = ask(client, agent_id, "payments").json()
    old = CARoot.objects.get()
    agent = Agent.objects.get(pk=agent_id)
    before = agent_snapshot(agent=agent)
    response = api.post("/api/v1/ca/rotate/")
    assert response.status_code == 201, response.content
    new_fp = response.json()["fingerprint"]
    after = agent_snapshot(agent=agent)
    assert after["revision"] > before["revision"]
    assert after["security"]["roots"] == [old.certificate, CARoot.objects.get(fingerprint=new_fp).certificate]
    second = ask(client, agent_id, "payments").json()
    assert _issuer_fp(first) == old.fingerprint
    assert _issuer_fp(second) == new_fp
    roots = api.get("/api/v1/ca/roots/").json()["roots"]
    assert [(r["fingerprint"], r["signing"]) for r in roots] == [(old.fingerprint, False), (new_fp, True)]


def test_retire_is_409_while_live_leaves_chain_to_the_root_then_works_when_forced(
    api: APIClient,
) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    ask(client, agent_id, "payments")
    old = CARoot.objects.get()
    assert api.post("/api/v1/ca/rotate/").status_code == 201
    url = f"/api/v1/ca/roots/{old.fingerprint}/retire/"
    response = api.post(url, {}, format="json")
    assert response.status_code == 409, response.content
    assert "1 unexpired" in response.json()["detail"]
    assert CARoot.objects.filter(retired_at__isnull=True).count() == 2
    agent = Agent.objects.get(pk=agent_id)
    before = agent_snapshot(agent=agent)
    assert api.post(url, {"force": True}, format="json").status_code == 204
    after = agent_snapshot(agent=agent)
    assert old.certificate not in after["security"]["roots"]
    assert len(after["security"]["roots"]) == 1
    assert after["revision"] > before["revision"]


def test_a_root_whose_leaves_were_revoked_retires_without_force(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    ask(client, agent_id, "payments")
    old = CARoot.objects.get()
    api.post("/api/v1/ca/rotate/")
    assert api.delete(f"/api/v1/agents/{agent_id}/").status_code == 204
    assert api.post(f"/api/v1/ca/roots/{old.fingerprint[:12]}/retire/", {}, format="json").status_code == 204


def test_the_last_root_cannot_be_retired_and_unknown_is_404(api: APIClient) -> None:
    api.get("/api/v1/ca/roots/")  # first use makes the root
    root = CARoot.objects.get()
    assert api.post(f"/api/v1/ca/roots/{root.fingerprint}/retire/", {"force": True}, format="json").status_code == 409
    assert api.post("/api/v1/ca/roots/deadbeefdeadbeef/retire/", {}, format="json").status_code == 404
    assert api.post(f"/api/v1/ca/roots/{root.fingerprint}/retire/", {"force": "x"}, format="json").status_code == 400


def test_only_staff_rotate(viewer: User) -> None:
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.post("/api/v1/ca/rotate/").status_code == 403
    assert not CARoot.objects.exists()


def test_the_ca_command_rotates_and_refuses_a_busy_retire(capsys: pytest.CaptureFixture[str]) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    ask(client, agent_id, "payments")
    old = CARoot.objects.get()
    call_command("ca", "rotate")
    assert CARoot.objects.count() == 2
    with pytest.raises(CommandError, match="unexpired"):
        call_command("ca", "retire", old.fingerprint)
    call_command("ca", "retire", old.fingerprint, "--force")
    out = capsys.readouterr().out
    assert f"retired root {old.fingerprint}" in out
    assert CARoot.objects.filter(retired_at__isnull=True).count() == 1


def _mesh_state() -> tuple[list[str], int, int]:
    from journal.models import AuditEntry
    from registry.models import MeshRevision

    return (list(CARoot.objects.order_by("id").values_list("fingerprint", flat=True)),
            MeshRevision.current(), AuditEntry.objects.count())


@pytest.mark.parametrize("body", [b"", b"{}"])
def test_rotate_takes_an_empty_body_or_an_empty_object(api: APIClient, body: bytes) -> None:
    response = api.post("/api/v1/ca/rotate/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert CARoot.objects.count() == 2  # the first root, then the rotation's


@pytest.mark.parametrize(("body", "content_type", "error"), [
    (b'{"validity": "30d"}', "application/json", {"validity": ["unknown field"]}),
    (b'{"force": true}', "application/json", {"force": ["unknown field"]}),
    (b"[]", "application/json", {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    (b'"rotate"', "application/json", {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}),
    (b"null", "application/json", {"non_field_errors": ["No data provided"]}),
    (b"{", "application/json", None),
    (b"x=1", "application/x-www-form-urlencoded", None),
])
def test_rotate_refuses_any_field_or_a_body_that_is_not_an_object_and_changes_nothing(
    api: APIClient, body: bytes, content_type: str, error: dict[str, list[str]] | None,
) -> None:
    api.get("/api/v1/ca/roots/")  # the first root
    before = _mesh_state()
    response = api.post("/api/v1/ca/rotate/", body, content_type=content_type)
    assert response.status_code in (400, 415), response.content
    if error is not None:
        assert response.status_code == 400 and response.json() == error
    assert _mesh_state() == before
