"""One registered instance: created through the REST API, heartbeated by a
background thread while alive (TTL checks), deregistered on close."""

from __future__ import annotations

import logging
import threading
from typing import Any

from agents.runtime.durations import parse_duration_ms
from meshconsole.client.http import MeshError, MeshHTTPError, Transport
from meshconsole.client.model import Service

log = logging.getLogger("meshconsole.client")


def ensure_service(transport: Transport, service: Service) -> dict[str, Any]:
    """The service's API document, created with a TTL check if it does not exist."""
    path = f"/api/v1/services/{service.name}/"
    try:
        return dict(transport.request("GET", path).body)
    except MeshHTTPError as exc:
        if exc.status != 404:
            raise
    body = {"name": service.name, "protocol": service.protocol,
            "check": {"type": "ttl", "interval": service.ttl, "timeout": service.ttl}}
    try:
        return dict(transport.request("POST", "/api/v1/services/", body).body)
    except MeshHTTPError as exc:
        if exc.status not in (400, 409):
            raise
        try:  # someone else created it at the same moment (a unique-name 400 or a 409)
            return dict(transport.request("GET", path).body)
        except MeshHTTPError:
            raise exc from None  # no: our document was refused, say why


class Registration:
    def __init__(self, transport: Transport, service: Service) -> None:
        self.transport = transport
        self.service = service
        self.status = "passing"  # what the next heartbeat reports (set_status)
        self._stop = threading.Event()
        document = ensure_service(transport, service)
        check = document.get("check") or {}
        # Heartbeats only for TTL checks: otherwise the control plane probes the instance.
        self.ttl_ms = parse_duration_ms(check.get("interval", service.ttl)) \
            if check.get("type") == "ttl" else 0
        self.id = self._create()
        self._thread: threading.Thread | None = None
        if self.ttl_ms:
            self.heartbeat()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"mesh-heartbeat-{service.name}")
            self._thread.start()

    def _create(self) -> str:
        s = self.service
        body = {"address": s.host, "port": s.port, "zone": s.zone, "weight": s.weight,
                "tags": list(s.tags), "metadata": dict(s.metadata)}
        answer = self.transport.request("POST", f"/api/v1/services/{s.name}/instances/", body)
        return str(answer.body["id"])

    @property
    def path(self) -> str:
        return f"/api/v1/services/{self.service.name}/instances/{self.id}/"

    def heartbeat(self) -> None:
        try:
            self.transport.request("PUT", f"{self.path}heartbeat/",
                                   {"status": self.status, "output": "meshconsole.client"})
        except MeshHTTPError as exc:
            if exc.status != 404:
                raise
            # An operator deleted it while we are alive: register again, as Consul's agent does.
            self.id = self._create()
            log.warning("%s instance was deleted; registered again as %s",
                        self.service.name, self.id)

    def set_status(self, status: str) -> None:
        """passing, warning or critical from the next heartbeat on (sent at once)."""
        self.status = status
        if self.ttl_ms:
            self.heartbeat()

    def _run(self) -> None:
        # Three heartbeats per TTL: one lost request does not turn the instance critical.
        interval = max(self.ttl_ms / 3000, 0.2)
        while not self._stop.wait(interval):
            try:
                self.heartbeat()
            except MeshError as exc:
                log.warning("heartbeat of %s %s: %s", self.service.name, self.id, exc)

    def stop_heartbeats(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.transport.timeout + 1)

    def close(self) -> None:
        """Stop heartbeating and deregister (once; a control plane that is down is logged)."""
        self.stop_heartbeats()
        if not self.id:
            return
        try:
            self.transport.request("DELETE", self.path)
        except MeshHTTPError as exc:
            if exc.status != 404:
                log.warning("deregistering %s %s: %s", self.service.name, self.id, exc)
        except MeshError as exc:
            log.warning("deregistering %s %s: %s", self.service.name, self.id, exc)
        self.id = ""

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
