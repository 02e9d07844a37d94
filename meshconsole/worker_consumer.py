"""The Celery worker's consumer, reconnecting to the broker at a steady pace.

Celery retries a lost broker connection at kombu's default pace: 2 s, then
2 s more per attempt, up to 30 s. After a 60 s Redis outage the worker found
Redis again only 11 s after it was back, and the longer the outage, the later
(up to 30 s) — while health checks wait. A connection attempt to a dead Redis
costs nothing, so retry every second or two for as long as it takes.
Loaded by name (worker_consumer in meshconsole.celery): only workers import it.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer

RECONNECT = {"interval_start": 1.0, "interval_step": 1.0, "interval_max": 2.0}


class SteadyReconnectConsumer(Consumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        # Celery calls conn.ensure_connection(errback, max_retries, callback=...)
        # without intervals, so kombu's defaults apply: pass ours on this connection.
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT)
        return super().ensure_connected(conn)
