"""Fixed log-scale latency buckets shared by the agent and the control plane.

Bucket i counts latencies in (BOUNDS_MS[i-1], BOUNDS_MS[i]]; the last bucket
(index len(BOUNDS_MS)) counts everything above the largest bound. Bounds grow
by sqrt(2), so a percentile read back from merged counts is within ~20%.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

BOUNDS_MS: tuple[float, ...] = tuple(round(0.1 * 2 ** (k / 2), 4) for k in range(40))
NBUCKETS = len(BOUNDS_MS) + 1


def bucket_index(ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, ms)


def empty() -> list[int]:
    return [0] * NBUCKETS


def merge(into: list[int], other: Sequence[int]) -> list[int]:
    for i, count in enumerate(other[:NBUCKETS]):
        into[i] += int(count)
    return into


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) in ms, interpolated inside its bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            lower = BOUNDS_MS[i - 1] if i > 0 else 0.0
            upper = BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1] * math.sqrt(2)
            fraction = (rank - seen) / count
            return round(lower + (upper - lower) * fraction, 3)
        seen += count
    return BOUNDS_MS[-1]
