"""HTTP request matching: path (exact, prefix, regex), methods, headers, query params.

Reusable on its own: nothing here knows about upstreams, subsets or snapshots
(the mesh's routes, `routes.py`, and later the gateway's host + path tables
compile their conditions into `Match` objects and put them in a `MatchTable`).

A table keeps first-match order (the first entry whose every condition holds
wins) but does not scan regexes per request where an index serves: exact
paths are a dict lookup, prefixes one dict lookup per distinct prefix length,
and only entries with a regex path (or none) are always candidates. The
candidates are then checked in table order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import parse_qsl

from agents.runtime.regexes import regex_error
from agents.runtime.vocabulary import ROUTE_METHOD, ROUTE_REGEX_MAX

T = TypeVar("T")


class MatchError(ValueError):
    """A condition that cannot be compiled (the text names the path of the bad field)."""


@dataclass(frozen=True)
class PathMatch:
    kind: str  # "exact" | "prefix" | "regex"
    value: str
    pattern: re.Pattern[str] | None = None  # kind "regex": compiled, used with fullmatch


@dataclass(frozen=True)
class ValueMatch:
    """One header or query condition: exact, prefix (headers), regex, present or absent."""

    name: str  # lower-case for headers
    kind: str  # "exact" | "prefix" | "regex" | "present" | "absent"
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def test(self, values: Sequence[str] | None) -> bool:
        kind = self.kind
        if kind == "absent":
            return not values
        if not values:
            return False
        if kind == "present":
            return True
        if kind == "exact":
            return self.value in values
        if kind == "prefix":
            return any(v.startswith(self.value) for v in values)
        assert self.pattern is not None
        return any(self.pattern.fullmatch(v) is not None for v in values)


class RequestView:
    """What matching reads of one request; header and query maps are built on first use."""

    __slots__ = ("method", "path", "query_string", "raw_headers", "_headers", "_query")

    def __init__(self, method: str, path: str, query_string: str,
                 raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.raw_headers = raw_headers
        self._headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None

    @classmethod
    def of(cls, method: bytes, url: bytes, headers: Sequence[tuple[bytes, bytes]]
           ) -> RequestView:
        # UTF-8 as routes are written; bytes that are not stay distinct (surrogateescape).
        target = url.decode("utf-8", "surrogateescape")
        path, _, query = target.partition("?")
        return cls(method.decode("latin-1"), path, query, headers)

    def headers(self) -> dict[str, list[str]]:
        found = self._headers
        if found is None:
            found = self._headers = {}
            for name, value in self.raw_headers:
                found.setdefault(name.decode("latin-1").lower(), []).append(
                    value.decode("utf-8", "surrogateescape"))
        return found

    def query(self) -> dict[str, list[str]]:
        found = self._query
        if found is None:
            found = self._query = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                found.setdefault(name, []).append(value)
        return found


@dataclass(frozen=True)
class Match:
    """Every condition of one route; path None matches any path."""

    path: PathMatch | None = None
    methods: frozenset[str] = frozenset()
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()

    def rest_holds(self, request: RequestView) -> bool:
        """Everything but an indexed (exact or prefix) path."""
        path = self.path
        if path is not None and path.pattern is not None and (
                path.pattern.fullmatch(request.path) is None):
            return False
        if self.methods and request.method not in self.methods:
            return False
        if self.headers:
            headers = request.headers()
            if not all(m.test(headers.get(m.name)) for m in self.headers):
                return False
        if self.query:
            query = request.query()
            if not all(m.test(query.get(m.name)) for m in self.query):
                return False
        return True

    def holds(self, request: RequestView) -> bool:
        path = self.path
        if path is not None and path.kind == "exact" and request.path != path.value:
            return False
        if path is not None and path.kind == "prefix" and not request.path.startswith(
                path.value):
            return False
        return self.rest_holds(request)


@dataclass
class MatchTable(Generic[T]):
    """Ordered (Match, value) entries; `first` gives the value of the first that holds."""

    entries: tuple[tuple[Match, T], ...]
    _exact: dict[str, list[int]] = field(default_factory=dict)
    _prefix: dict[str, list[int]] = field(default_factory=dict)
    _lengths: tuple[int, ...] = ()
    _always: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        always: list[int] = []
        for index, (match, _) in enumerate(self.entries):
            path = match.path
            if path is None or path.kind == "regex":
                always.append(index)
            elif path.kind == "exact":
                self._exact.setdefault(path.value, []).append(index)
            else:
                self._prefix.setdefault(path.value, []).append(index)
        self._always = tuple(always)
        self._lengths = tuple(sorted({len(p) for p in self._prefix}))

    @classmethod
    def of(cls, entries: Iterable[tuple[Match, T]]) -> MatchTable[T]:
        return cls(tuple(entries))

    def candidates(self, path: str) -> list[int]:
        """Indexes of the entries whose path condition may hold, in table order."""
        found = list(self._always)
        exact = self._exact.get(path)
        if exact:
            found += exact
        prefix = self._prefix
        for length in self._lengths:
            if length > len(path):
                break
            hit = prefix.get(path[:length])
            if hit:
                found += hit
        if len(found) > 1:
            found.sort()
        return found

    def first(self, request: RequestView) -> T | None:
        entries = self.entries
        for index in self.candidates(request.path):
            match, value = entries[index]
            if match.rest_holds(request):
                return value
        return None


# Compiling the snapshot's JSON shape (docs/agent-protocol.md, "Routes, subsets and the gateway")

def _regex(value: object, path: str) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise MatchError(f"{path}: expected a string")
    if len(value) > ROUTE_REGEX_MAX:
        raise MatchError(f"{path}: a regex of more than {ROUTE_REGEX_MAX} characters")
    problem = regex_error(value)
    if problem is not None:
        raise MatchError(f"{path}: not a valid regex ({problem})")
    return re.compile(value)


def _one_of(data: dict[str, object], kinds: Sequence[str], path: str) -> str:
    given = [k for k in kinds if k in data]
    if len(given) != 1:
        raise MatchError(f"{path}: expected exactly one of {', '.join(kinds)}")
    return given[0]


def compile_path(value: object, path: str) -> PathMatch:
    if not isinstance(value, dict):
        raise MatchError(f"{path}: expected an object")
    kind = _one_of(value, ("exact", "prefix", "regex"), path)
    text = value[kind]
    if kind == "regex":
        return PathMatch(kind, str(text), _regex(text, f"{path}.regex"))
    if not isinstance(text, str) or not text.startswith("/"):
        raise MatchError(f"{path}.{kind}: expected a path starting with /")
    return PathMatch(kind, text)


def compile_value(value: object, path: str, *, header: bool) -> ValueMatch:
    if not isinstance(value, dict):
        raise MatchError(f"{path}: expected an object")
    name = value.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise MatchError(f"{path}.name: expected a non-empty string")
    if header and name != name.lower():
        raise MatchError(f"{path}.name: header names are lower-case")
    kinds = ("exact", "prefix", "regex", "present", "absent") if header else (
        "exact", "regex", "present")
    kind = _one_of(value, kinds, path)
    text = value[kind]
    if kind in ("present", "absent"):
        if text is not True:
            raise MatchError(f"{path}.{kind}: expected true")
        return ValueMatch(name, kind)
    if kind == "regex":
        return ValueMatch(name, kind, str(text), _regex(text, f"{path}.regex"))
    if not isinstance(text, str):
        raise MatchError(f"{path}.{kind}: expected a string")
    return ValueMatch(name, kind, text)


_METHOD = re.compile(ROUTE_METHOD)


def compile_match(value: object, path: str) -> Match:
    """A route's `match` object (absent or {} matches every request)."""
    if value is None:
        return Match()
    if not isinstance(value, dict):
        raise MatchError(f"{path}: expected an object")
    raw_path = value.get("path")
    methods = value.get("methods") or []
    if not isinstance(methods, list) or not all(
            isinstance(m, str) and _METHOD.match(m) for m in methods):
        raise MatchError(f"{path}.methods: expected a list of upper-case method names")
    lists = {}
    for key in ("headers", "query"):
        items = value.get(key) or []
        if not isinstance(items, list) or len(items) > 50:
            raise MatchError(f"{path}.{key}: expected a list (at most 50)")
        lists[key] = tuple(compile_value(v, f"{path}.{key}[{i}]", header=key == "headers")
                           for i, v in enumerate(items))
    return Match(
        path=None if raw_path is None else compile_path(raw_path, f"{path}.path"),
        methods=frozenset(methods),
        headers=lists["headers"],
        query=lists["query"],
    )
