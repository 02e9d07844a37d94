"""Discovery kept current by the blocking query, in a background thread.

The first answer is fetched in the caller's thread (an unknown service or a
control plane that never answered is an error there); afterwards the watch
thread long-polls `?index=N&wait=…` and swaps in each new answer whole. When the
control plane stops answering, the last answer keeps being served, marked stale.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from agents.runtime.client import Backoff
from meshconsole.client.http import MeshError, MeshHTTPError, Transport
from meshconsole.client.model import Discovery, ServiceEndpoint

log = logging.getLogger("meshconsole.client")


class Watch:
    def __init__(self, transport: Transport, service: str, *, wait_s: float = 30.0) -> None:
        self.transport = transport
        self.service = service
        self.wait_s = wait_s
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._backoff = Backoff(0.1, 5.0)
        self.current = self._fetch(None)
        self._thread = threading.Thread(target=self._run, name=f"mesh-watch-{service}",
                                        daemon=True)
        self._thread.start()

    def _fetch(self, index: int | None) -> Discovery:
        path = f"/api/v1/discovery/{self.service}/"
        timeout = None
        if index is not None:
            path += f"?index={index}&wait={int(self.wait_s)}s"
            timeout = self.wait_s + 10  # the server answers by wait_s; this is for a dead one
        answer = self.transport.request("GET", path, timeout=timeout)
        body = answer.body if isinstance(answer.body, dict) else {}
        endpoints = tuple(ServiceEndpoint.from_api(e) for e in body.get("endpoints", []))
        header = answer.headers.get("X-Mesh-Index") or body.get("revision") or 0
        return Discovery(self.service, endpoints, int(header))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                fresh = self._fetch(self.current.revision)
                if self._stop.is_set():
                    return
            except MeshHTTPError as exc:
                if exc.status == 404:  # deleted: nothing to send traffic to, and not stale
                    self._swap(Discovery(self.service, (), self.current.revision))
                else:
                    self._swap(replace(self.current, stale=True))
                self._stop.wait(self._backoff.next())
                continue
            except MeshError as exc:
                if self._stop.is_set():
                    return  # closed while a long poll was in flight: nobody reads this
                if not self.current.stale:
                    log.warning("discovery of %s: %s; serving the last answer", self.service, exc)
                self._swap(replace(self.current, stale=True))
                self._stop.wait(self._backoff.next())
                continue
            self._backoff.reset()
            self._swap(fresh)

    def _swap(self, discovery: Discovery) -> None:
        with self.changed:
            self.current = discovery
            self.changed.notify_all()

    def wait_for(self, index: int, timeout: float) -> Discovery:
        """The current answer once its index passes INDEX (or after TIMEOUT)."""
        with self.changed:
            self.changed.wait_for(lambda: self.current.revision > index, timeout)
            return self.current

    def stop(self) -> None:
        # The thread may sit in a long poll for up to wait_s; it is a daemon and
        # looks at the flag as soon as that returns.
        self._stop.set()
