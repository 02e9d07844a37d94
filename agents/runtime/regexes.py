"""Which route regexes are safe to run on every request.

Python's `re` backtracks, so a repeated group that itself repeats ("(a+)+$",
"/api/(\\w+/?)+$") takes exponential time on a near miss: one request path of
"/" + "a" * 40 + "!" holds the agent's event loop for minutes, and a gateway
serves public traffic. Such a regex is refused wherever one is written (the
routes API, the gateway's routes API, the snapshot parser), by this one rule:
a group that may repeat a varying number of times (more than once) must not
contain a varying repetition, when either of the two is unbounded. Bounded
nesting ("(\\d{1,3}\\.){3}") and single repeats ("/a*b*") stay allowed; overlapping
alternatives under a repeat ("(a|a)+") are not detected.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # noqa: PLC2701 - the parser's own tree, stable in 3.11+
import re._parser as sre_parse  # noqa: PLC2701
from typing import Any

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
_UNBOUNDED = sre_constants.MAXREPEAT
NESTED = "nested repetition (such as (a+)+) can take exponential time on a near miss"


def regex_error(text: str) -> str | None:
    """Why TEXT is not a route regex (it does not compile, or nests repetition), or None."""
    try:
        re.compile(text)
        tree = sre_parse.parse(text)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"does not compile: {exc}"
    return NESTED if _nests(list(tree), outer=None) else None


def _nests(items: list[tuple[Any, Any]], outer: tuple[int, int] | None) -> bool:
    """Whether a varying repeat inside OUTER (the nearest enclosing repeat's bounds that
    may repeat more than once, or None) makes an ambiguous nesting."""
    for op, av in items:
        if op in _REPEATS:
            low, high, sub = av
            varying = low != high
            if varying and outer is not None and _UNBOUNDED in (high, outer[1]):
                return True
            inner = (low, high) if varying and high > 1 else outer
            if _nests(list(sub), inner):
                return True
        elif op is sre_constants.SUBPATTERN:
            if _nests(list(av[-1]), outer):
                return True
        elif op is sre_constants.BRANCH:
            if any(_nests(list(branch), outer) for branch in av[1]):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if _nests(list(av[1]), outer):
                return True
        elif op is sre_constants.ATOMIC_GROUP:
            continue  # no backtracking into it
    return False
