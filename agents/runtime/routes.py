"""An upstream's `subsets` and `routes` in a snapshot: parsed and validated whole.

The shape is the contract in docs/agent-protocol.md ("Routes, subsets and the
gateway"). Any error raises RouteError naming the field's path; the snapshot
parser turns it into the upstream's refusal (admission.py: that upstream alone
keeps what it had). Matching is `routing.py`; what the proxy does with a route
(targets, splits, stickiness, fallback) is `splits.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from agents.runtime.policy import HashOn
from agents.runtime.routing import Match, MatchError, compile_match
from agents.runtime.vocabulary import (
    POLICY_BOUNDS,
    ROUTE_FALLBACKS,
    ROUTE_FORBIDDEN_HEADERS,
    ROUTE_NAME,
    ROUTE_SPLIT_MAX,
    ROUTE_STICKY_TYPES,
    ROUTE_WEIGHT_MAX,
    ROUTES_MAX,
)

_NAME = re.compile(ROUTE_NAME)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]{1,256}$")  # a lower-case header name
_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]{0,8192}$")  # no CR, LF or other controls
_URL_PATH = re.compile(r"^/[^\x00-\x20\x7f]{0,2047}$")  # no whitespace or controls


_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in "?#")


def path_bytes(path: str) -> bytes:
    """A rewrite's path for the request line: UTF-8, anything beyond ASCII (and "?", "#",
    which would start a query or a fragment) percent-encoded; the check above already
    refused spaces and controls."""
    return quote(path, safe=_PATH_SAFE, encoding="utf-8").encode("ascii")


class RouteError(ValueError):
    """Why an upstream's routes or subsets were refused (names the field's path)."""


@dataclass(frozen=True)
class SubsetSpec:
    tags: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()

    def selects(self, tags: frozenset[str] | tuple[str, ...],
                metadata: Mapping[str, str]) -> bool:
        """An endpoint carrying every listed tag and every listed metadata pair."""
        return self.tags.issubset(tags) and all(metadata.get(k) == v for k, v in self.metadata)


@dataclass(frozen=True)
class SplitSpec:
    weight: int
    subset: str = ""  # one of subset / service
    service: str = ""


@dataclass(frozen=True)
class HeaderOps:
    set: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = frozenset()

    @property
    def names(self) -> frozenset[bytes]:
        """Every header name these operations replace or drop."""
        return self.remove | {name for name, _ in self.set}

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        names = self.names
        kept = [(n, v) for n, v in headers if n.lower() not in names]
        return [*kept, *self.set]


NO_HEADER_OPS = HeaderOps()


@dataclass(frozen=True)
class RouteSpec:
    name: str
    match: Match
    split: tuple[SplitSpec, ...]
    sticky: HashOn | None = None  # type "header" or "cookie"
    fallback: str = "next"
    rewrite_prefix: str | None = None  # replaces match.path's prefix
    rewrite_path: str | None = None  # replaces the whole path
    request_headers: HeaderOps = NO_HEADER_OPS
    response_headers: HeaderOps = NO_HEADER_OPS
    timeout_ms: int | None = None
    attempts: int | None = None

    @property
    def services(self) -> frozenset[str]:
        """Other services this route splits to (each needs its `route_target` upstream)."""
        return frozenset(s.service for s in self.split if s.service)


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RouteError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _str_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RouteError(f"{path}: expected a list of strings")
    return value


def _str_map(value: object, path: str) -> dict[str, str]:
    data = _obj({} if value is None else value, path)
    for key, item in data.items():
        if not isinstance(item, str):
            raise RouteError(f"{path}.{key}: expected a string")
    return data


def _bounded(value: object, path: str, bound_key: str) -> int:
    bound = POLICY_BOUNDS[bound_key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RouteError(f"{path}: expected an integer")
    if not bound.low <= value <= bound.high:
        raise RouteError(f"{path}: {value} is outside {bound.low}..{bound.high}")
    return value


def parse_metadata(value: object, path: str) -> tuple[tuple[str, str], ...]:
    """An endpoint's (or a subset's) metadata: {str: str}, kept as sorted pairs."""
    return tuple(sorted(_str_map(value, path).items()))


def parse_subsets(value: object, path: str) -> dict[str, SubsetSpec]:
    data = _obj({} if value is None else value, path)
    subsets: dict[str, SubsetSpec] = {}
    for name, raw in data.items():
        where = f"{path}.{name}"
        if not _NAME.match(name):
            raise RouteError(f"{where}: {name!r} is not a subset name ([a-z0-9-]{{1,63}})")
        spec = _obj(raw, where)
        tags = _str_list(spec.get("tags") or [], f"{where}.tags")
        subsets[name] = SubsetSpec(frozenset(tags), parse_metadata(spec.get("metadata"),
                                                                   f"{where}.metadata"))
    return subsets


def _split(value: object, path: str, subsets: Mapping[str, SubsetSpec]) -> tuple[SplitSpec, ...]:
    if not isinstance(value, list) or not value:
        raise RouteError(f"{path}: expected a non-empty list")
    if len(value) > ROUTE_SPLIT_MAX:
        raise RouteError(f"{path}: at most {ROUTE_SPLIT_MAX} targets")
    targets: list[SplitSpec] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        entry = _obj(raw, where)
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not (
                0 <= weight <= ROUTE_WEIGHT_MAX):
            raise RouteError(f"{where}.weight: expected an integer in 0..{ROUTE_WEIGHT_MAX}")
        if ("subset" in entry) == ("service" in entry):
            raise RouteError(f"{where}: expected exactly one of subset, service")
        subset, service = entry.get("subset", ""), entry.get("service", "")
        if not isinstance(subset, str) or not isinstance(service, str):
            raise RouteError(f"{where}: subset/service must be a string")
        if "subset" in entry and subset not in subsets:
            raise RouteError(f"{where}.subset: {subset!r} is not in subsets")
        if "service" in entry and not _NAME.match(service):  # (and in upstreams: snapshot.py)
            raise RouteError(f"{where}.service: {service!r} is not a service name")
        if (subset, service) in seen:
            raise RouteError(f"{where}: the same target twice")
        seen.add((subset, service))
        targets.append(SplitSpec(weight, subset, service))
    if not sum(t.weight for t in targets):
        raise RouteError(f"{path}: the weights sum to 0")
    return tuple(targets)


def _sticky(value: object, path: str) -> HashOn | None:
    if value is None:
        return None
    data = _obj(value, path)
    kinds = [k for k in ROUTE_STICKY_TYPES if k in data]
    if len(kinds) != 1:
        raise RouteError(f"{path}: expected exactly one of header, cookie")
    name = data[kinds[0]]
    if not isinstance(name, str) or not name or len(name) > 100:
        raise RouteError(f"{path}.{kinds[0]}: expected a non-empty name")
    if kinds[0] == "header" and not _TOKEN.match(name):
        raise RouteError(f"{path}.header: expected a lower-case header name")
    return HashOn(kinds[0], name)


def _header_ops(value: object, path: str) -> HeaderOps:
    if value is None:
        return NO_HEADER_OPS
    data = _obj(value, path)
    pairs: list[tuple[bytes, bytes]] = []
    for name, text in _str_map(data.get("set"), f"{path}.set").items():
        _header_name(name, f"{path}.set.{name}")
        if not _VALUE.match(text):
            raise RouteError(f"{path}.set.{name}: a header value without control characters")
        pairs.append((name.encode("latin-1"), text.encode("utf-8")))
    remove = _str_list(data.get("remove") or [], f"{path}.remove")
    for i, name in enumerate(remove):
        _header_name(name, f"{path}.remove[{i}]")
    if not pairs and not remove:
        return NO_HEADER_OPS
    return HeaderOps(tuple(pairs), frozenset(n.encode("latin-1") for n in remove))


def _header_name(name: str, path: str) -> None:
    if not _TOKEN.match(name):
        raise RouteError(f"{path}: expected a lower-case header name")
    if name in ROUTE_FORBIDDEN_HEADERS:
        raise RouteError(f"{path}: {name} is the proxy's, a route cannot change it")


def _route(value: object, path: str, subsets: Mapping[str, SubsetSpec]) -> RouteSpec:
    data = _obj(value, path)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RouteError(f"{path}.name: expected a name [a-z0-9-]{{1,63}}")
    try:
        match = compile_match(data.get("match"), f"{path}.match")
    except MatchError as exc:
        raise RouteError(str(exc)) from None
    fallback = data.get("fallback")
    if fallback is None:
        fallback = "next"  # absent or null: the contract's default
    if fallback not in ROUTE_FALLBACKS:
        raise RouteError(f"{path}.fallback: expected one of {', '.join(ROUTE_FALLBACKS)}")
    rewrite_prefix = rewrite_path = None
    if data.get("rewrite") is not None:
        rewrite = _obj(data["rewrite"], f"{path}.rewrite")
        if ("prefix" in rewrite) == ("path" in rewrite):
            raise RouteError(f"{path}.rewrite: expected exactly one of prefix, path")
        kind = "prefix" if "prefix" in rewrite else "path"
        text = rewrite[kind]
        if not isinstance(text, str) or not _URL_PATH.match(text):
            raise RouteError(f"{path}.rewrite.{kind}: expected a URL path starting with /")
        if kind == "prefix":
            if match.path is None or match.path.kind != "prefix":
                raise RouteError(f"{path}.rewrite.prefix: needs match.path.prefix")
            rewrite_prefix = text
        else:
            rewrite_path = text
    timeout = data.get("timeout_ms")
    retries = data.get("retries")
    attempts = None
    if retries is not None:
        given = _obj(retries, f"{path}.retries").get("attempts")
        if given is not None:
            attempts = _bounded(given, f"{path}.retries.attempts", "retries.attempts")
    return RouteSpec(
        name=name,
        match=match,
        split=_split(data.get("split"), f"{path}.split", subsets),
        sticky=_sticky(data.get("sticky"), f"{path}.sticky"),
        fallback=fallback,
        rewrite_prefix=rewrite_prefix,
        rewrite_path=rewrite_path,
        request_headers=_header_ops(data.get("request_headers"), f"{path}.request_headers"),
        response_headers=_header_ops(data.get("response_headers"), f"{path}.response_headers"),
        timeout_ms=None if timeout is None else _bounded(timeout, f"{path}.timeout_ms",
                                                         "request_timeout_ms"),
        attempts=attempts,
    )


def parse_routes(value: object, path: str, subsets: Mapping[str, SubsetSpec]
                 ) -> tuple[RouteSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RouteError(f"{path}: expected a list")
    if len(value) > ROUTES_MAX:
        raise RouteError(f"{path}: at most {ROUTES_MAX} routes")
    routes = tuple(_route(v, f"{path}[{i}]", subsets) for i, v in enumerate(value))
    names = [r.name for r in routes]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise RouteError(f"{path}[{i}].name: {name!r} is used twice")
    return routes
