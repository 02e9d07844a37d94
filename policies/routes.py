"""Subsets and L7 routes of a destination service: the document's validation.

One document per service, `{"subsets": {...}, "routes": [...]}`, in exactly the
shape the snapshot carries (docs/agent-protocol.md "Routes, subsets and the
gateway"), so what is stored, versioned, exported and sent to agents is one
thing. `routes_validate` normalizes (header names lower-cased, methods
upper-cased, `fallback` spelled out) and refuses anything else with errors
keyed by the field's path (`routes.0.split.1.subset`).
"""

from __future__ import annotations

import re
from typing import Any, NotRequired, TypedDict

from rest_framework import serializers

from agents.runtime.regexes import regex_error
from agents.runtime.vocabulary import (
    POLICY_BOUNDS,
    ROUTE_FALLBACKS,
    ROUTE_FORBIDDEN_HEADERS,
    ROUTE_HEADER_KINDS,
    ROUTE_METHOD,
    ROUTE_NAME,
    ROUTE_PATH_KINDS,
    ROUTE_QUERY_KINDS,
    ROUTE_REGEX_MAX,
    ROUTE_REWRITE_KINDS,
    ROUTE_SPLIT_MAX,
    ROUTE_STICKY_TYPES,
    ROUTE_WEIGHT_MAX,
    ROUTES_MAX,
)
from registry.models import Protocol, Service

# The agent's bounds (agents.runtime.vocabulary) are the contract's: what the
# control plane accepts, every agent parses.
NAME_RE = re.compile(ROUTE_NAME)  # subset and route names
HEADER_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an RFC 9110 token, lower-case
COOKIE_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
METHOD_RE = re.compile(ROUTE_METHOD)
RESERVED_HEADERS = ROUTE_FORBIDDEN_HEADERS  # framing and hop-by-hop: the proxy's
FALLBACKS = ROUTE_FALLBACKS
MAX_ROUTES = min(100, ROUTES_MAX)  # stricter than the agent's parser
MAX_SPLIT = ROUTE_SPLIT_MAX
MAX_SUBSETS = 64
MAX_MATCHES = 16  # header or query conditions per route
MAX_METHODS = 16
MAX_SELECTORS = 32  # tags or metadata pairs per subset
MAX_HEADER_EDITS = 32
MAX_PATH = 1024
MAX_REGEX = ROUTE_REGEX_MAX
MAX_VALUE = 1024
MAX_WEIGHT = ROUTE_WEIGHT_MAX
# A route's overrides stay within the traffic policy's own bounds (a timeout of 0 is none).
TIMEOUT_MS = (max(POLICY_BOUNDS["request_timeout_ms"].low, 1),
              POLICY_BOUNDS["request_timeout_ms"].high)
ATTEMPTS = (POLICY_BOUNDS["retries.attempts"].low, POLICY_BOUNDS["retries.attempts"].high)

Errors = dict[str, list[str]]


class SubsetDoc(TypedDict):
    tags: list[str]
    metadata: dict[str, str]


class HeaderEdits(TypedDict):
    set: dict[str, str]
    remove: list[str]


class SplitTarget(TypedDict, total=False):
    subset: str
    service: str
    weight: int


class RouteDoc(TypedDict):
    name: str
    match: dict[str, Any]
    split: list[SplitTarget]
    fallback: str
    sticky: NotRequired[dict[str, str]]
    rewrite: NotRequired[dict[str, str]]
    request_headers: NotRequired[HeaderEdits]
    response_headers: NotRequired[HeaderEdits]
    timeout_ms: NotRequired[int]
    retries: NotRequired[dict[str, int]]


class RoutesDocument(TypedDict):
    subsets: dict[str, SubsetDoc]
    routes: list[RouteDoc]


def empty_document() -> RoutesDocument:
    return {"subsets": {}, "routes": []}


def split_services(document: dict[str, Any]) -> set[str]:
    """The other services DOCUMENT's splits send traffic to."""
    return {
        str(t["service"])
        for route in document.get("routes", [])
        for t in route.get("split", [])
        if t.get("service")
    }


class _Checker:
    """Collects every error of one document (not only the first) by path."""

    def __init__(self, service: Service, known_services: dict[str, str]) -> None:
        self.service = service
        self.known_services = known_services  # name -> protocol
        self.errors: Errors = {}

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def obj(self, path: str, value: Any, allowed: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, "expected an object")
            return None
        for key in sorted(set(value) - allowed, key=str):
            self.error(f"{path}.{key}" if path else str(key), "unknown field")
        return value

    def items(self, path: str, value: Any, limit: int) -> list[Any]:
        if not isinstance(value, list):
            self.error(path, "expected a list")
            return []
        if len(value) > limit:
            self.error(path, f"at most {limit} entries")
            return []
        return value

    def text(self, path: str, value: Any, limit: int = MAX_VALUE) -> str | None:
        if not isinstance(value, str):
            self.error(path, "expected a string")
            return None
        if len(value) > limit:
            self.error(path, f"at most {limit} characters")
            return None
        if any(c in value for c in "\r\n\x00"):
            self.error(path, "no CR, LF or NUL")
            return None
        return value

    def integer(self, path: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, "expected an integer")
            return None
        if not low <= value <= high:
            self.error(path, f"expected {low}..{high}")
            return None
        return value

    def name(self, path: str, value: Any, pattern: re.Pattern[str], what: str) -> str | None:
        if not isinstance(value, str) or not pattern.match(value):
            self.error(path, f"not a valid {what} ({pattern.pattern})")
            return None
        return value

    def header_name(self, path: str, value: Any) -> str | None:
        lowered = value.lower() if isinstance(value, str) else value
        return self.name(path, lowered, HEADER_RE, "header name")

    def regex(self, path: str, value: Any) -> str | None:
        text = self.text(path, value, MAX_REGEX)
        if text is None:
            return None
        problem = regex_error(text)  # does not compile, or backtracks exponentially
        if problem is not None:
            self.error(path, problem)
            return None
        return text

    def url_path(self, path: str, value: Any) -> str | None:
        text = self.text(path, value, MAX_PATH)
        if text is not None and (not text.startswith("/") or any(c.isspace() for c in text)):
            self.error(path, "expected a path starting with / and without spaces")
            return None
        return text

    # -- the document's parts --------------------------------------------------

    def subsets(self, value: Any) -> dict[str, SubsetDoc]:
        out: dict[str, SubsetDoc] = {}
        if not isinstance(value, dict):
            self.error("subsets", "expected an object of name -> {tags, metadata}")
            return out
        if len(value) > MAX_SUBSETS:
            self.error("subsets", f"at most {MAX_SUBSETS} subsets")
            return out
        for name, body in value.items():
            path = f"subsets.{name}"
            if self.name(path, name, NAME_RE, "subset name") is None:
                continue
            spec = self.obj(path, body, {"tags", "metadata"})
            if spec is None:
                continue
            tags = []
            raw_tags = self.items(f"{path}.tags", spec.get("tags", []), MAX_SELECTORS)
            for i, tag in enumerate(raw_tags):
                text = self.text(f"{path}.tags.{i}", tag, 200)
                if text is not None and text not in tags:
                    tags.append(text)
            metadata: dict[str, str] = {}
            raw = spec.get("metadata", {})
            if not isinstance(raw, dict) or len(raw) > MAX_SELECTORS:
                self.error(
                    f"{path}.metadata", f"expected an object of at most {MAX_SELECTORS} strings"
                )
            else:
                for key, item in raw.items():
                    k = self.text(f"{path}.metadata", key, 200)
                    v = self.text(f"{path}.metadata.{key}", item, 500)
                    if k is not None and v is not None:
                        metadata[k] = v
            out[name] = {"tags": tags, "metadata": metadata}
        return out

    def routes(self, value: Any, subsets: set[str]) -> list[RouteDoc]:
        out: list[RouteDoc] = []
        seen: set[str] = set()
        for i, body in enumerate(self.items("routes", value, MAX_ROUTES)):
            route = self.route(f"routes.{i}", body, subsets)
            if route is None:
                continue
            if route["name"] in seen:
                self.error(f"routes.{i}.name", f"duplicate route name {route['name']}")
            seen.add(route["name"])
            out.append(route)
        return out

    def route(self, path: str, body: Any, subsets: set[str]) -> RouteDoc | None:
        spec = self.obj(
            path, body,
            {"name", "match", "split", "sticky", "fallback", "rewrite", "request_headers",
             "response_headers", "timeout_ms", "retries"},
        )
        if spec is None:
            return None
        name = self.name(f"{path}.name", spec.get("name"), NAME_RE, "route name")
        match = self.match(f"{path}.match", spec.get("match", {}))
        split = self.split(f"{path}.split", spec.get("split"), subsets)
        fallback = spec.get("fallback", "next")
        if fallback not in FALLBACKS:
            self.error(f"{path}.fallback", f"expected one of {', '.join(FALLBACKS)}")
        route: RouteDoc = {"name": name or "", "match": match, "split": split,
                           "fallback": str(fallback)}
        if "sticky" in spec:
            sticky = self.one_of(f"{path}.sticky", spec["sticky"], ROUTE_STICKY_TYPES)
            if sticky is not None:
                key, raw = sticky
                if key == "header":
                    cleaned = self.header_name(f"{path}.sticky.header", raw)
                else:
                    cleaned = self.name(f"{path}.sticky.cookie", raw, COOKIE_RE, "cookie name")
                if cleaned is not None:
                    route["sticky"] = {key: cleaned}
        if "rewrite" in spec:
            rewrite = self.one_of(f"{path}.rewrite", spec["rewrite"], ROUTE_REWRITE_KINDS)
            if rewrite is not None:
                key, raw = rewrite
                target = self.url_path(f"{path}.rewrite.{key}", raw)
                if key == "prefix" and "prefix" not in match.get("path", {}):
                    self.error(f"{path}.rewrite.prefix", "needs a match.path.prefix to replace")
                elif target is not None:
                    route["rewrite"] = {key: target}
        for part in ("request_headers", "response_headers"):
            if part in spec:
                edits = self.header_edits(f"{path}.{part}", spec[part])
                if edits is not None:
                    route[part] = edits  # type: ignore[literal-required]
        if "timeout_ms" in spec:
            timeout = self.integer(f"{path}.timeout_ms", spec["timeout_ms"], *TIMEOUT_MS)
            if timeout is not None:
                route["timeout_ms"] = timeout
        if "retries" in spec:
            retries = self.obj(f"{path}.retries", spec["retries"], {"attempts"})
            if retries is not None:
                attempts = self.integer(f"{path}.retries.attempts", retries.get("attempts"),
                                        *ATTEMPTS)
                if attempts is not None:
                    route["retries"] = {"attempts": attempts}
        return route

    def one_of(self, path: str, value: Any, keys: tuple[str, ...]) -> tuple[str, Any] | None:
        spec = self.obj(path, value, set(keys))
        if spec is None:
            return None
        if len(spec) != 1:
            self.error(path, f"expected exactly one of {', '.join(keys)}")
            return None
        key = next(iter(spec))
        return str(key), spec[key]

    def match(self, path: str, value: Any) -> dict[str, Any]:
        spec = self.obj(path, value, {"path", "methods", "headers", "query"})
        out: dict[str, Any] = {}
        if spec is None:
            return out
        if "path" in spec:
            kind = self.one_of(f"{path}.path", spec["path"], ROUTE_PATH_KINDS)
            if kind is not None:
                key, raw = kind
                where = f"{path}.path.{key}"
                cleaned = self.regex(where, raw) if key == "regex" else self.url_path(where, raw)
                if cleaned is not None:
                    out["path"] = {key: cleaned}
        if "methods" in spec:
            methods: list[str] = []
            for i, raw in enumerate(self.items(f"{path}.methods", spec["methods"], MAX_METHODS)):
                upper = raw.upper() if isinstance(raw, str) else raw
                method = self.name(f"{path}.methods.{i}", upper, METHOD_RE, "method")
                if method is not None and method not in methods:
                    methods.append(method)
            if methods:
                out["methods"] = methods
        for part, kinds in (("headers", ROUTE_HEADER_KINDS), ("query", ROUTE_QUERY_KINDS)):
            if part in spec:
                conditions = self.conditions(f"{path}.{part}", spec[part], kinds, part == "headers")
                if conditions:
                    out[part] = conditions
        return out

    def conditions(
        self, path: str, value: Any, kinds: tuple[str, ...], header: bool
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, body in enumerate(self.items(path, value, MAX_MATCHES)):
            where = f"{path}.{i}"
            spec = self.obj(where, body, {"name", *kinds})
            if spec is None:
                continue
            if header:
                name = self.header_name(f"{where}.name", spec.get("name"))
            else:
                name = self.text(f"{where}.name", spec.get("name"), 200)
                if name == "":
                    self.error(f"{where}.name", "must not be empty")
                    name = None
            given = [k for k in kinds if k in spec]
            if len(given) != 1:
                self.error(where, f"expected exactly one of {', '.join(kinds)}")
                continue
            key = given[0]
            raw = spec[key]
            cleaned: Any
            if key in ("present", "absent"):
                cleaned = raw if raw is True else None
                if cleaned is None:
                    self.error(f"{where}.{key}", "expected true")
            elif key == "regex":
                cleaned = self.regex(f"{where}.regex", raw)
            else:
                cleaned = self.text(f"{where}.{key}", raw)
            if name is not None and cleaned is not None:
                out.append({"name": name, key: cleaned})
        return out

    def split(self, path: str, value: Any, subsets: set[str]) -> list[SplitTarget]:
        out: list[SplitTarget] = []
        if value is None:
            self.error(path, "a route needs a split (at least one target)")
            return out
        targets = self.items(path, value, MAX_SPLIT)
        if isinstance(value, list) and not value:
            self.error(path, "a route needs a split (at least one target)")
        total = 0
        seen: set[tuple[str, str]] = set()
        for i, body in enumerate(targets):
            where = f"{path}.{i}"
            spec = self.obj(where, body, {"subset", "service", "weight"})
            if spec is None:
                continue
            weight = self.integer(f"{where}.weight", spec.get("weight"), 0, MAX_WEIGHT)
            total += weight or 0
            if ("subset" in spec) == ("service" in spec):
                self.error(where, "expected exactly one of subset, service")
                continue
            if "subset" in spec:
                subset = spec["subset"]
                if not isinstance(subset, str) or subset not in subsets:
                    self.error(f"{where}.subset", f"unknown subset {subset!r}")
                    continue
                target: SplitTarget = {"subset": subset}
            else:
                other = spec["service"]
                if other == self.service.name:
                    self.error(f"{where}.service", "a split cannot target its own service "
                                                   "(use a subset)")
                    continue
                if not isinstance(other, str) or other not in self.known_services:
                    self.error(f"{where}.service", f"unknown service {other!r}")
                    continue
                if self.known_services[other] != self.service.protocol:
                    self.error(
                        f"{where}.service",
                        f"{other} is {self.known_services[other]}, "
                        f"{self.service.name} is {self.service.protocol}",
                    )
                    continue
                target = {"service": other}
            key = ("subset", target["subset"]) if "subset" in target else ("service", other)
            if key in seen:
                self.error(where, f"{key[0]} {key[1]} is already a target of this split")
                continue
            seen.add(key)
            if weight is not None:
                target["weight"] = weight
                out.append(target)
        if targets and total == 0 and not any(k.startswith(f"{path}.") for k in self.errors):
            self.error(path, "the weights must not all be 0")
        return out

    def header_edits(self, path: str, value: Any) -> HeaderEdits | None:
        spec = self.obj(path, value, {"set", "remove"})
        if spec is None:
            return None
        edits: HeaderEdits = {"set": {}, "remove": []}
        raw_set = spec.get("set", {})
        if not isinstance(raw_set, dict) or len(raw_set) > MAX_HEADER_EDITS:
            self.error(f"{path}.set", f"expected an object of at most {MAX_HEADER_EDITS} headers")
        else:
            for key, raw in raw_set.items():
                name = self.header_name(f"{path}.set.{key}", key)
                text = self.text(f"{path}.set.{key}", raw)
                if name in RESERVED_HEADERS:
                    self.error(f"{path}.set.{key}", "a framing header is the proxy's")
                elif name is not None and text is not None:
                    edits["set"][name] = text
        for i, raw in enumerate(self.items(f"{path}.remove", spec.get("remove", []),
                                           MAX_HEADER_EDITS)):
            name = self.header_name(f"{path}.remove.{i}", raw)
            if name in RESERVED_HEADERS:
                self.error(f"{path}.remove.{i}", "a framing header is the proxy's")
            elif name is not None and name not in edits["remove"]:
                edits["remove"].append(name)
        return edits


def routes_validate(service: Service, body: Any) -> RoutesDocument:
    """BODY (without `version`) as a normalized document of SERVICE, or
    serializers.ValidationError with every error keyed by its field path."""
    checker = _Checker(service, {})
    spec = checker.obj("", body, {"subsets", "routes"})
    if spec is None:
        raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
    # The services the splits name, looked up in one query.
    routes = spec.get("routes")
    named = {
        t["service"]
        for r in (routes if isinstance(routes, list) else [])
        if isinstance(r, dict) and isinstance(r.get("split"), list)
        for t in r["split"]
        if isinstance(t, dict) and isinstance(t.get("service"), str)
    }
    checker.known_services = dict(
        Service.objects.filter(name__in=named).values_list("name", "protocol")
    )
    subsets = checker.subsets(spec.get("subsets", {}))
    checked = checker.routes(spec.get("routes", []), set(subsets))
    if checked and service.protocol != Protocol.HTTP:
        # Routes match and rewrite requests: HTTP only (subsets alone are harmless).
        checker.error("routes", f"L7 routes need an http service ({service.name} is "
                                f"{service.protocol})")
    if checker.errors:
        raise serializers.ValidationError(checker.errors)
    return {"subsets": subsets, "routes": checked}
