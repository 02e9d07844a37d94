"""The event loop every agent process runs on: uvloop when installed, else asyncio's."""

from __future__ import annotations

import asyncio


def event_loop_runner() -> asyncio.Runner:
    """uvloop when installed; `meshagent run` and the worker processes both use it."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional; the stdlib loop is correct, just slower
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
