"""Apply of an export is a no-op diff, over generated meshes (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcode.apply import mesh_apply, mesh_export
from registry.models import Service

pytestmark = pytest.mark.django_db

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
DURATIONS = st.sampled_from(["500ms", "1s", "1500ms", "2m", 3, 0.25, "1h"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@st.composite
def services(draw: Any, name: str) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": "Service", "name": name}
    if draw(st.booleans()):
        document["protocol"] = draw(st.sampled_from(["http", "tcp"]))
    if draw(st.booleans()):
        document["description"] = draw(TEXT).strip()
    if draw(st.booleans()):
        document["tags"] = draw(st.lists(NAMES, max_size=3))
    if draw(st.booleans()):
        interval = draw(st.integers(1, 60))
        document["check"] = {
            "type": draw(st.sampled_from(["http", "tcp", "ttl", "none"])),
            "interval": f"{interval}s",
            "timeout": f"{draw(st.integers(10, interval * 1000))}ms",
            "rise": draw(st.integers(1, 5)),
            "headers": draw(st.dictionaries(st.sampled_from(["x-a", "x-b"]), TEXT.map(str.strip))),
        }
    if draw(st.booleans()):
        document["drain_timeout"] = draw(DURATIONS)
    return document


@st.composite
def policies(draw: Any, name: str, later: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": "TrafficPolicy", "name": name}
    balancer = draw(st.sampled_from(["round_robin", "least_request", "ring_hash", "peak_ewma"]))
    document["load_balancer"] = balancer
    if balancer == "ring_hash" and draw(st.booleans()):
        document["hash_on"] = {"type": "header", "name": "x-user"}
    if draw(st.booleans()):
        document["retries"] = {"attempts": draw(st.integers(0, 10)), "on": ["5xx"]}
    if draw(st.booleans()):
        document["rate_limit"] = {"rps": draw(st.floats(0.5, 1000).map(lambda f: round(f, 2)))}
    if draw(st.booleans()):
        document["zone_priority"] = draw(st.lists(st.sampled_from(["z1", "z2"]), unique=True))
    if later and draw(st.booleans()):
        # Targets only later services: no cycle, by construction.
        targets = draw(st.lists(st.sampled_from(later), unique=True, max_size=3))
        document["failover"] = {"targets": targets, "hold_down": draw(DURATIONS)}
    return document


HTTP = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"methods": st.lists(st.sampled_from(["GET", "post", "DELETE"]), min_size=1, max_size=2)},
        optional={"path_prefix": st.sampled_from(["/", "/refund", "/a/b"]),
                  "headers": st.dictionaries(st.sampled_from(["x-a", "X-B"]), TEXT.map(str.strip),
                                             max_size=2)},
    ),
)


@st.composite
def intentions(draw: Any, name: str, names: list[str]) -> dict[str, Any]:
    sources = draw(st.lists(st.sampled_from([n for n in [*names, "*"] if n != name]),
                            unique=True, min_size=1, max_size=3))
    rules = []
    for source in sources:
        rule: dict[str, Any] = {"source": source, "action": draw(st.sampled_from(["allow", "deny"]))}
        http = draw(HTTP)
        if http is not None:
            rule["http"] = http
        rules.append(rule)
    return {"kind": "Intentions", "name": name, "sources": rules}


@st.composite
def routes(draw: Any, name: str, others: list[str]) -> dict[str, Any]:
    subsets = draw(st.lists(st.sampled_from(["v1", "v2", "canary"]), min_size=1, unique=True))
    document: dict[str, Any] = {
        "kind": "Routes", "name": name,
        "subsets": {s: {"tags": [s], **({"metadata": {"track": s}} if draw(st.booleans()) else {})}
                    for s in subsets},
    }
    targets = [{"subset": s} for s in subsets] + [{"service": o} for o in others]
    document["routes"] = [
        {"name": f"r{i}",
         **({"match": {"path": {"prefix": "/api"}, "methods": ["get"]}} if draw(st.booleans()) else {}),
         "split": [{**t, "weight": draw(st.integers(1, 100))}
                   for t in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3,
                                          unique_by=lambda t: tuple(t.items())))]}
        for i in range(draw(st.integers(0, 3)))
    ]
    return document


@st.composite
def meshes(draw: Any) -> list[dict[str, Any]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    documents = [draw(services(name)) for name in names]
    for i, name in enumerate(names):
        if draw(st.booleans()):
            documents.append(draw(policies(name, names[i + 1 :])))
    http = [d["name"] for d in documents[: len(names)] if d.get("protocol", "http") == "http"]
    for name in http:
        if draw(st.booleans()):
            documents.append(draw(routes(name, [o for o in http if o != name])))
    for name in [*names, "*"]:
        if draw(st.booleans()):
            documents.append(draw(intentions(name, names)))
    return documents


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mesh=meshes())
def test_apply_of_an_export_is_a_no_op(db: None, mesh: list[dict[str, Any]]) -> None:
    with transaction.atomic():
        first = mesh_apply(user=None, documents=mesh)
        assert len(first.plan.added) == len(mesh)
        exported = mesh_export()
        again = mesh_apply(user=None, documents=exported, prune=True, dry_run=True)
        assert again.plan.empty and again.plan.unchanged == len(mesh)
        assert mesh_apply(user=None, documents=mesh, dry_run=True).plan.empty
        # And the export rebuilds the same mesh from nothing.
        Service.objects.all().delete()
        mesh_apply(user=None, documents=exported)
        assert mesh_export() == exported
        transaction.set_rollback(True)
