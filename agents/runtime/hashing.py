"""Consistent hashing balancers: ketama-style ring hash and Maglev.

Both are built once per endpoint set (the selection hands out the same tuple
object until health or the snapshot changes) and looked up per request with
the request's 64-bit key; without a key they pick at random. Points derive
only from each endpoint's own identity, so when one of N endpoints leaves only
the keys it owned (about 1/N) move.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Collection, Sequence

from agents.runtime.balancer import Balancer
from agents.runtime.endpoint import Endpoint

POINTS_PER_UNIT = 160  # ring points for an endpoint of average weight
MAGLEV_SIZE = 65537  # prime, as in the Maglev paper and Envoy's default
_CACHE = 8


def hash64(data: bytes) -> int:
    """A stable 64-bit hash (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")



class _Cached(Balancer):
    consistent_hash = True

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._built: dict[int, tuple[Sequence[Endpoint], object]] = {}

    def _table(self, endpoints: Sequence[Endpoint]) -> object:
        entry = self._built.get(id(endpoints))
        if entry is not None and entry[0] is endpoints:
            return entry[1]
        if len(self._built) >= _CACHE:
            self._built.clear()
        table = self.build(endpoints)
        self._built[id(endpoints)] = (endpoints, table)  # holding it keeps the id unique
        return table

    def build(self, endpoints: Sequence[Endpoint]) -> object:
        raise NotImplementedError

    def _random(self, endpoints: Sequence[Endpoint], tried: Collection[str]) -> Endpoint | None:
        candidates = [e for e in endpoints if e.weight > 0 and e.key not in tried]
        return self._rng.choice(candidates) if candidates else None


class RingHash(_Cached):
    name = "ring_hash"
    label = "Ring hash (consistent)"

    def build(self, endpoints: Sequence[Endpoint]) -> object:
        live = [e for e in endpoints if e.weight > 0]
        if not live:
            return ([], [])
        mean = sum(e.weight for e in live) / len(live)
        points: list[tuple[int, int]] = []
        for index, e in enumerate(live):
            count = max(1, round(POINTS_PER_UNIT * e.weight / mean))
            ident = f"{e.address}:{e.port}".encode()
            points.extend((hash64(b"%s-%d" % (ident, i)), index) for i in range(count))
        points.sort()
        return ([p[0] for p in points], [live[p[1]] for p in points])

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        if hash_key is None:
            return self._random(endpoints, tried)
        table: tuple[list[int], list[Endpoint]] = self._table(endpoints)  # type: ignore[assignment]
        hashes, owners = table
        n = len(hashes)
        if not n:
            return None
        start = bisect.bisect_left(hashes, hash_key)
        for step in range(n):
            owner: Endpoint = owners[(start + step) % n]
            if owner.key not in tried:
                return owner
        return None


class Maglev(_Cached):
    name = "maglev"
    label = "Maglev (consistent)"

    def build(self, endpoints: Sequence[Endpoint]) -> object:
        live = [e for e in endpoints if e.weight > 0]
        if not live:
            return []
        m = MAGLEV_SIZE
        top = max(e.weight for e in live)
        offsets, skips, nexts, credit = [], [], [0] * len(live), [0.0] * len(live)
        for e in live:
            ident = f"{e.address}:{e.port}".encode()
            offsets.append(hash64(b"offset:" + ident) % m)
            skips.append(hash64(b"skip:" + ident) % (m - 1) + 1)
        table: list[Endpoint | None] = [None] * m
        filled = 0
        while filled < m:
            for i, e in enumerate(live):
                credit[i] += e.weight / top  # weighted Maglev: heavier ones fill more rows
                if credit[i] < 1.0:
                    continue
                credit[i] -= 1.0
                while True:
                    slot = (offsets[i] + nexts[i] * skips[i]) % m
                    nexts[i] += 1
                    if table[slot] is None:
                        break
                table[slot] = e
                filled += 1
                if filled == m:
                    break
        return table

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        if hash_key is None:
            return self._random(endpoints, tried)
        table: list[Endpoint] = self._table(endpoints)  # type: ignore[assignment]
        if not table:
            return None
        owner = table[hash_key % MAGLEV_SIZE]
        if owner.key not in tried:
            return owner
        return self._random(endpoints, tried)  # a retry: anywhere else will do
