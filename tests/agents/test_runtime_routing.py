"""The route matcher (routing.py) and the snapshot's routes and subsets (routes.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agents.runtime.admission import admit
from agents.runtime.routes import parse_routes, parse_subsets
from agents.runtime.routing import (
    MatchError,
    MatchTable,
    RequestView,
    compile_match,
)
from agents.runtime.snapshot import SnapshotError, parse_snapshot, parse_upstreams
from agents.runtime.splits import Route


def view(method: str, url: str, headers: list[tuple[str, str]] | None = None) -> RequestView:
    return RequestView.of(method.encode(), url.encode(),
                          [(n.encode(), v.encode()) for n, v in headers or []])


def table(*matches: dict[str, Any]) -> MatchTable[int]:
    return MatchTable.of((compile_match(m, f"m{i}"), i) for i, m in enumerate(matches))


def test_the_first_matching_entry_wins_whatever_its_path_kind() -> None:
    t = table({"path": {"regex": "/api/.*"}}, {"path": {"exact": "/api/x"}},
              {"path": {"prefix": "/api"}})
    assert t.first(view("GET", "/api/x")) == 0
    assert t.first(view("GET", "/api")) == 2  # the regex wants "/api/" and more
    t = table({"path": {"prefix": "/api"}}, {"path": {"exact": "/api/x"}})
    assert t.first(view("GET", "/api/x")) == 0  # order, not specificity


def test_exact_prefix_and_regex_paths() -> None:
    t = table({"path": {"exact": "/a"}}, {"path": {"prefix": "/b/"}},
              {"path": {"regex": "/c/[0-9]+"}})
    assert t.first(view("GET", "/a")) == 0
    assert t.first(view("GET", "/a/") ) is None
    assert t.first(view("GET", "/b/1?x=1")) == 1
    assert t.first(view("GET", "/b")) is None
    assert t.first(view("GET", "/c/12")) == 2
    assert t.first(view("GET", "/c/12/x")) is None  # fullmatch, not search
    # One Match on its own (what a gateway's host table will hold per entry):
    prefix = compile_match({"path": {"prefix": "/b/"}, "methods": ["GET"]}, "m")
    assert prefix.holds(view("GET", "/b/x")) and not prefix.holds(view("GET", "/bx"))
    assert not prefix.holds(view("PUT", "/b/x"))


def test_methods_headers_and_query_all_must_hold() -> None:
    t = table({"path": {"prefix": "/"}, "methods": ["POST"],
               "headers": [{"name": "x-user", "exact": "bob"},
                           {"name": "x-trace", "present": True},
                           {"name": "x-debug", "absent": True},
                           {"name": "x-agent", "prefix": "curl/"},
                           {"name": "x-id", "regex": "[a-f]{3}"}],
               "query": [{"name": "v", "exact": "2"}, {"name": "q", "regex": "a+"},
                         {"name": "dbg", "present": True}]},
              {})
    good = [("X-User", "bob"), ("X-Trace", "1"), ("x-agent", "curl/8"), ("x-id", "abc")]
    assert t.first(view("POST", "/p?v=2&q=aaa&dbg", good)) == 0
    assert t.first(view("GET", "/p?v=2&q=aaa&dbg", good)) == 1
    assert t.first(view("POST", "/p?v=3&q=aaa&dbg", good)) == 1
    assert t.first(view("POST", "/p?v=2&q=aab&dbg", good)) == 1
    assert t.first(view("POST", "/p?v=2&q=aaa", good)) == 1
    assert t.first(view("POST", "/p?v=2&q=aaa&dbg", [*good, ("x-debug", "1")])) == 1
    assert t.first(view("POST", "/p?v=2&q=aaa&dbg", good[1:])) == 1
    assert t.first(view("POST", "/p?v=2&q=aaa&dbg", [*good[:3], ("x-id", "abcd")])) == 1


def test_the_prefix_index_checks_only_candidates() -> None:
    # 200 prefix routes: a request is checked against the ones whose prefix it has.
    t = table(*({"path": {"prefix": f"/svc{i}/"}} for i in range(200)))
    assert t.candidates("/svc42/x") == [42]
    assert t.first(view("GET", "/svc199/a")) == 199
    assert t.first(view("GET", "/other")) is None


@pytest.mark.parametrize("bad", [
    {"path": {"exact": "/a", "prefix": "/a"}},
    {"path": {"prefix": "a"}},
    {"path": {"regex": "("}},
    {"methods": ["get"]},
    {"headers": [{"name": "X-User", "exact": "a"}]},
    {"headers": [{"name": "x", "present": False}]},
    {"query": [{"name": "x", "prefix": "a"}]},
    {"headers": "x"},
])
def test_bad_match_conditions_are_refused_with_their_path(bad: dict[str, Any]) -> None:
    with pytest.raises(MatchError, match=r"^m\."):
        compile_match(bad, "m")


# Python's re backtracks: each of these takes exponential time on a near miss such as
# "/" + "a" * 40 + "!" (minutes on one request path), holding the agent's event loop.
NESTED = ["/(a+)+$", "(a*)*b", r"/api/(\w+/?)+$", "(x{1,5})+y", "((ab)+c?)*", "(?:a+|b)+$",
          "(a+){2,}"]
LINEAR = [r"/pay/\d+", r"/(v1|v2)/orders/[0-9]+", r"(\d{1,3}\.){3}\d{1,3}", "(ab)+c",
          "/a*b*c*", "(?:abc)*", "/(a+b)?"]


@pytest.mark.parametrize("regex", NESTED)
def test_a_regex_with_nested_repetition_is_refused(regex: str) -> None:
    with pytest.raises(MatchError, match=r"^m\.path\.regex: .*nested repetition"):
        compile_match({"path": {"regex": regex}}, "m")
    with pytest.raises(MatchError, match="nested repetition"):
        compile_match({"headers": [{"name": "x", "regex": regex}]}, "m")


@pytest.mark.parametrize("regex", LINEAR)
def test_a_regex_without_it_still_compiles(regex: str) -> None:
    compile_match({"path": {"regex": regex}}, "m")



BASE: dict[str, Any] = {
    "revision": 3,
    "upstreams": {
        "payments": {
            "protocol": "http", "policy": {},
            "endpoints": [{"id": "a", "address": "127.0.0.1", "port": 1, "tags": ["v1"],
                           "metadata": {"track": "stable"}},
                          {"id": "b", "address": "127.0.0.1", "port": 2, "tags": ["v2"],
                           "metadata": {"track": "canary"}}],
            "subsets": {"v1": {"tags": ["v1"]},
                        "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}},
            "routes": [{"name": "canary-api", "match": {"path": {"prefix": "/api"}},
                        "split": [{"subset": "v1", "weight": 95},
                                  {"subset": "v2", "weight": 5},
                                  {"service": "payments-next", "weight": 0}],
                        "sticky": {"header": "x-user"}, "fallback": "next",
                        "rewrite": {"prefix": "/v2/api"},
                        "request_headers": {"set": {"x-canary": "1"}, "remove": ["x-debug"]},
                        "response_headers": {"set": {}, "remove": []},
                        "timeout_ms": 2000, "retries": {"attempts": 1}}],
        },
        "payments-next": {"protocol": "http", "policy": {}, "route_target": True,
                          "endpoints": [{"id": "c", "address": "127.0.0.1", "port": 3}]},
    },
}


def test_the_contract_example_parses() -> None:
    snapshot = parse_snapshot(BASE)
    payments = snapshot.upstreams["payments"]
    assert payments.endpoints[1].metadata == (("track", "canary"),)
    route = payments.routes[0]
    assert [(s.subset, s.service, s.weight) for s in route.split] == [
        ("v1", "", 95), ("v2", "", 5), ("", "payments-next", 0)]
    assert route.sticky is not None and route.sticky.type == "header"
    assert route.rewrite_prefix == "/v2/api" and route.timeout_ms == 2000
    assert route.attempts == 1
    assert route.request_headers.set == ((b"x-canary", b"1"),)
    assert snapshot.upstreams["payments-next"].route_target


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node: Any = raw["upstreams"]["payments"]
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "value", "message"), [
    (["routes", 0, "split", 0, "subset"], "v9", "routes[0].split[0].subset"),
    (["routes", 0, "split"], [{"subset": "v1", "weight": 0}], "weights sum to 0"),
    (["routes", 0, "split", 0, "weight"], -1, "split[0].weight"),
    (["routes", 0, "split", 0, "weight"], True, "split[0].weight"),
    (["routes", 0, "fallback"], "retry", "fallback"),
    (["routes", 0, "name"], "Canary", "routes[0].name"),
    (["routes", 0, "match", "path"], {"exact": "/api"}, "rewrite.prefix: needs"),
    (["routes", 0, "rewrite"], {"prefix": "/a\r\nx: y"}, "rewrite.prefix"),
    (["routes", 0, "request_headers", "set"], {"x-a": "1\r\nx-b: 2"}, "control characters"),
    (["routes", 0, "request_headers", "set"], {"host": "evil"}, "request_headers.set.host"),
    (["routes", 0, "response_headers", "remove"], ["content-length"], "content-length"),
    (["routes", 0, "sticky"], {"header": "x", "cookie": "y"}, "sticky"),
    (["routes", 0, "timeout_ms"], 0, "timeout_ms"),
    (["routes", 0, "retries", "attempts"], 11, "retries.attempts"),
    (["routes", 0, "match", "path"], {"regex": "[", }, "match.path.regex"),
    (["subsets", "v1", "tags"], "v1", "subsets.v1.tags"),
    (["endpoints", 0, "metadata"], {"track": 1}, "endpoints[0].metadata.track"),
    (["route_target"], "yes", "route_target"),
])
def test_an_invalid_route_or_subset_refuses_that_upstream_alone(
        path: list[Any], value: Any, message: str) -> None:
    raw = _with(path, value)
    parsed, errors = parse_upstreams(raw)
    assert set(errors) == {"payments"} and "payments-next" in parsed
    assert message in str(errors["payments"])
    assert str(errors["payments"]).startswith("upstreams.payments.")
    with pytest.raises(SnapshotError):
        parse_snapshot(raw)


def test_a_route_name_twice_is_refused() -> None:
    raw = copy.deepcopy(BASE)
    routes = raw["upstreams"]["payments"]["routes"]
    routes.append(copy.deepcopy(routes[0]))
    _, errors = parse_upstreams(raw)
    assert "routes[1].name" in str(errors["payments"])


def test_a_split_to_a_service_missing_from_upstreams_is_refused() -> None:
    raw = copy.deepcopy(BASE)
    del raw["upstreams"]["payments-next"]
    parsed, errors = parse_upstreams(raw)
    assert not parsed
    assert "'payments-next' is not in upstreams" in str(errors["payments"])


def test_an_older_snapshot_without_routes_still_parses() -> None:
    raw = copy.deepcopy(BASE)
    for key in ("subsets", "routes"):
        del raw["upstreams"]["payments"][key]
    upstream = parse_snapshot(raw).upstreams["payments"]
    assert upstream.routes == () and upstream.subsets == {}


@pytest.mark.parametrize(("prefix", "rewrite", "url", "expected"), [
    ("/api", {"prefix": "/v2/api"}, "/api/x?q=1", "/v2/api/x?q=1"),
    ("/api", {"prefix": "/"}, "/api/x", "/x"),
    ("/api", {"prefix": "/"}, "/api", "/"),
    ("/api/", {"prefix": "/v2/"}, "/api/x", "/v2/x"),
    ("/api", {"path": "/exact"}, "/api/x?q=1", "/exact?q=1"),
])
def test_rewrites(prefix: str, rewrite: dict[str, str], url: str, expected: str) -> None:
    subsets = parse_subsets({"v1": {"tags": []}}, "s")
    spec, = parse_routes([{"name": "r", "match": {"path": {"prefix": prefix}},
                           "split": [{"subset": "v1", "weight": 1}], "rewrite": rewrite}],
                         "routes", subsets)
    assert Route(spec, [], ("a", "b")).rewrite(url.encode()) == expected.encode()


def test_the_draw_follows_cumulative_weights_and_skips_weight_zero() -> None:
    subsets = parse_subsets({"a": {}, "b": {}, "c": {}}, "s")
    spec, = parse_routes([{"name": "r", "split": [{"subset": "a", "weight": 3},
                                                   {"subset": "b", "weight": 0},
                                                   {"subset": "c", "weight": 1}]}],
                         "routes", subsets)
    route = Route(spec, [], ("a", "b"))
    assert [route.draw(p) for p in (0.0, 0.5, 0.74, 0.75, 0.99)] == [0, 0, 0, 2, 2]


def test_a_kept_upstream_keeps_the_split_targets_it_needs() -> None:
    """Admission's merged snapshot parses strictly (disk, workers) even when the new one
    drops or breaks a service a refused (kept) upstream splits to."""
    first = admit(BASE, None, holds={}, now=0.0).snapshot
    # payments breaks and payments-next is dropped: both keep their previous entries
    raw = _with(["routes", 0, "fallback"], "retry")
    del raw["upstreams"]["payments-next"]
    admission = admit(raw, first, holds={}, now=0.0)
    assert set(admission.refused) == {"upstreams.payments"}
    assert set(admission.snapshot.upstreams) == {"payments", "payments-next"}
    parse_snapshot(admission.snapshot.raw)  # strict: what goes to disk and workers
    # a new route to a new service whose entry is refused: that upstream is refused too
    raw = _with(["routes", 0, "split", 2, "service"], "payments-new")
    raw["upstreams"]["payments-new"] = {"endpoints": "bad"}
    admission = admit(raw, None, holds={}, now=0.0)
    assert set(admission.refused) == {"upstreams.payments", "upstreams.payments-new"}
    assert "payments-new" in admission.refused["upstreams.payments"]
    assert set(admission.snapshot.upstreams) == {"payments-next"}
    parse_snapshot(admission.snapshot.raw)


def test_nulls_mean_absent() -> None:
    raw = copy.deepcopy(BASE)
    payments = raw["upstreams"]["payments"]
    payments["route_target"] = None
    payments["subsets"]["v1"] = {"tags": None, "metadata": None}
    payments["endpoints"][0]["metadata"] = None
    route = payments["routes"][0]
    route.update(fallback=None, sticky=None, rewrite=None, request_headers=None,
                 response_headers=None, timeout_ms=None, retries={"attempts": None})
    route["match"] = {"path": None, "methods": None, "headers": None, "query": None}
    spec = parse_snapshot(raw).upstreams["payments"].routes[0]
    assert (spec.fallback, spec.sticky, spec.timeout_ms, spec.attempts) == ("next", None, None,
                                                                            None)
    assert spec.match.path is None and not spec.match.methods


def test_what_the_control_plane_accepts_parses_here_too() -> None:
    """The control plane's validation (policies/routes.py) accepts these: so must the agent,
    or a valid document would be NACKed."""
    raw = copy.deepcopy(BASE)
    route = raw["upstreams"]["payments"]["routes"][0]
    route["name"] = "-canary-"  # the contract's [a-z0-9-]{1,63}
    route["match"]["methods"] = ["M-SEARCH", "GET"]
    route["match"]["path"] = {"prefix": "/café"}
    route["rewrite"] = {"prefix": "/v2/ü?"}
    route["request_headers"] = {"set": {"x-forwarded-for": "10.0.0.1", "x-note": "naïve\tok"},
                                "remove": ["x-request-id", "expect"]}
    spec = parse_snapshot(raw).upstreams["payments"].routes[0]
    assert spec.request_headers.set == ((b"x-forwarded-for", b"10.0.0.1"),
                                        (b"x-note", "naïve\tok".encode()))
    rewritten = Route(spec, [], ("a", "b")).rewrite("/café/x?y=1".encode())
    assert rewritten == b"/v2/%C3%BC%3F/x?y=1"  # a rewrite never starts a query
