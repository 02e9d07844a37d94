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


def test_a_report_with_too_many_windows_is_a_400():
    from agents.api.serializers import MAX_EDGE_WINDOWS
    client, body = enroll()
    window = {"window_end": 1_796_288_400.0, "seconds": 10, "source": "a",
              "destination": "b", "requests": 1, "errors": 0, "latency_sum_ms": 1.0,
              "buckets": []}
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    r = client.post(url, {"metrics": [window] * (MAX_EDGE_WINDOWS + 1)}, format="json")
    assert r.status_code == 400, (r.status_code, r.content[:300])
    assert "no more than 10000" in str(r.json()["metrics"])
    r = client.post(url, {"metrics": [window]}, format="json")
    assert r.status_code == 200, r.content[:300]
