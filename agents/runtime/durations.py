"""Durations as the contract spells them: "500ms", "5s", "2m", "1h"; a bare number is seconds.

Shared by the agent runtime and the control plane; imports nothing but the stdlib.
"""

from __future__ import annotations

import math
import re

# [0-9], not \d: float() would read "٣" or "５" (other scripts' digits) as numbers.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_FACTOR_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


def parse_duration_ms(value: object) -> int:
    """Milliseconds for VALUE; ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '500ms', '5s' or '2m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _finite_ms(value * 1000, value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '500ms', '5s' or '2m'")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as '500ms', '5s' or '2m'")
    number, unit = match.groups()
    return _finite_ms(float(number) * _FACTOR_MS[unit], value)


def _finite_ms(ms: float, value: object) -> int:
    # JSON's 1e400 and a 400-digit string both become float inf (YAML's .nan a NaN).
    if not math.isfinite(ms):
        raise ValueError(f"{value!r} is not a finite duration")
    return int(round(ms))


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of MS milliseconds."""
    if ms % 3_600_000 == 0 and ms:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0 and ms:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"
