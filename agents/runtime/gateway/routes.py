"""The gateway's route index: host (exact, then *.suffix longest first, then any), then
path (exact dict, prefix dict probed longest length first, regex last), then method.

Built once per snapshot; a request costs a few dict probes, not a scan of every
route's regex: the prefixes of one host bucket are kept in a dict per length,
and only the distinct lengths are probed (longest first).
"""

from __future__ import annotations

from agents.runtime.gateway.table import Route


class _Bucket:
    __slots__ = ("exact", "prefixes", "lengths", "regexes", "any_path")

    def __init__(self, routes: list[Route]) -> None:
        self.exact: dict[str, list[Route]] = {}
        self.prefixes: dict[str, list[Route]] = {}
        self.regexes: list[Route] = []
        self.any_path: list[Route] = []
        for route in routes:
            if route.path_kind == "exact":
                self.exact.setdefault(route.path, []).append(route)
            elif route.path_kind == "prefix":
                self.prefixes.setdefault(route.path, []).append(route)
            elif route.path_kind == "regex":
                self.regexes.append(route)
            else:
                self.any_path.append(route)
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)

    def match(self, path: str, method: bytes) -> Route | None:
        routes = self.exact.get(path)
        if routes is not None:
            for route in routes:
                if not route.methods or method in route.methods:
                    return route
        prefixes = self.prefixes
        if prefixes:
            size = len(path)
            for length in self.lengths:
                if length > size:
                    continue
                routes = prefixes.get(path[:length])
                if routes is not None:
                    for route in routes:
                        if not route.methods or method in route.methods:
                            return route
        for route in self.regexes:
            assert route.regex is not None
            if (not route.methods or method in route.methods) and route.regex.fullmatch(path):
                return route
        for route in self.any_path:
            if not route.methods or method in route.methods:
                return route
        return None


class RouteIndex:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        exact: dict[str, list[Route]] = {}
        wildcard: dict[str, list[Route]] = {}
        anyhost: list[Route] = []
        for route in routes:
            if not route.hosts:
                anyhost.append(route)
            for host in route.hosts:
                if host.startswith("*."):
                    wildcard.setdefault(host[1:], []).append(route)  # ".example.org"
                else:
                    exact.setdefault(host, []).append(route)
        self.exact = {h: _Bucket(r) for h, r in exact.items()}
        # Longest suffix first: *.a.example.org before *.example.org.
        self.wildcard = sorted(((s, _Bucket(r)) for s, r in wildcard.items()),
                               key=lambda item: -len(item[0]))
        self.anyhost = _Bucket(anyhost) if anyhost else None
        self.size = len(routes)

    def match(self, host: str, path: str, method: bytes) -> Route | None:
        """HOST lower-case without port; PATH without the query."""
        bucket = self.exact.get(host)
        if bucket is not None:
            route = bucket.match(path, method)
            if route is not None:
                return route
        for suffix, bucket in self.wildcard:
            if host.endswith(suffix) and len(host) > len(suffix):
                route = bucket.match(path, method)
                if route is not None:
                    return route
        if self.anyhost is not None:
            return self.anyhost.match(path, method)
        return None
