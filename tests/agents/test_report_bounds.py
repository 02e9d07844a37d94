"""Report numbers the database cannot hold are a 400, not a 500 (found by the schemathesis run)."""

import pytest

from tests.agents.test_api_agents import enroll

pytestmark = pytest.mark.django_db

@pytest.mark.parametrize("nack", [
    {"revision": 2**63, "reason": "x"}, {"revision": 1, "reason": "\x00"}, {"revision": None, "reason": "x", "refused": {"\x00": "y"}},
    {"revision": 1, "reason": "x", "refused": {"a"*600: "y"}}, {"revision": 1, "reason": "x"*1000},
])
def test_nack(nack):
    client, body = enroll()
    r = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"nack": nack, "applied_revision": 1}, format="json")
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])

@pytest.mark.parametrize("rev", [2**63, 2**64])
def test_applied(rev):
    client, body = enroll()
    r = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"applied_revision": rev}, format="json")
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])
