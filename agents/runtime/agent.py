"""The Agent: listeners and admin up first, then the control plane when it answers.

Order matters for the "data plane never depends on the control plane" promise:
the persisted snapshot is applied and the listeners serve before we even try
to enroll; the control loop then retries forever with jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from typing import TYPE_CHECKING, Any

from agents.runtime import __version__
from agents.runtime.admin import start_admin
from agents.runtime.admission import admit
from agents.runtime.client import (
    Backoff,
    ControlPlaneBusy,
    ControlPlaneClient,
    ControlPlaneError,
    EnrollmentRefused,
    Unauthorized,
)
from agents.runtime.config import AgentConfig, Upstream, join_host_port
from agents.runtime.endpoint import Endpoint
from agents.runtime.handover import (
    DRAIN_IDLE_S,
    DRAIN_TIMEOUT_S,
    HandoverServer,
    activated_sockets,
    listener_key,
    take_over,
)
from agents.runtime.instances import InstanceWindows
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import (
    Metrics,
    render_prometheus,
    render_resilience,
)
from agents.runtime.proxy_http import start_http_listener
from agents.runtime.proxy_tcp import start_tcp_listener
from agents.runtime.snapshot import (
    Identity,
    Snapshot,
    SnapshotError,
    answered_interval_ms,
    forget_identity,
    load_identity,
    load_snapshot,
    pending_agent_token,
    save_identity,
    save_snapshot,
)
from agents.runtime.splits import apply_upstreams
from agents.runtime.upstream import UpstreamRuntime
from agents.runtime.vocabulary import MAX_KEYS_USED
from agents.runtime.zerotrust import ZeroTrust

if TYPE_CHECKING:  # gateway mode is imported only by the agents that run it (~2 MB),
    from agents.runtime.dns import DnsServer  # DNS (dnspython, ~4 MB) only when served
    from agents.runtime.gateway.listener import Gateway

log = logging.getLogger("meshagent")

MAX_PENDING_WINDOWS = 2000  # metrics kept across failed reports, oldest dropped first
LONG_POLL_S = 30.0


class Agent:
    def __init__(self, config: AgentConfig, *, client: ControlPlaneClient | None = None,
                 long_poll_s: float = LONG_POLL_S, backoff: Backoff | None = None,
                 drain_s: float = DRAIN_TIMEOUT_S) -> None:
        self.config = config
        self.drain_s = drain_s
        self.client = client or ControlPlaneClient(config.control_plane)
        self.long_poll_s = long_poll_s
        self.backoff = backoff or Backoff()
        self.metrics = Metrics()
        self.instance_windows = InstanceWindows()  # per upstream instance (instances.py)
        self.upstreams = [UpstreamRuntime(u, config.zone) for u in config.upstreams]
        # Services only split to by a route (`route_target`): endpoints, no listener.
        self.route_targets: dict[str, UpstreamRuntime] = {}
        self.contexts: list[ListenerContext] = []
        self.servers: list[asyncio.Server] = []
        self.admin_server: asyncio.Server | None = None
        self.admin_address = ""
        self.snapshot: Snapshot | None = None
        self.nack: dict[str, Any] | None = None
        self.identity: Identity | None = None
        self._last_raw: object = None
        self._holds: dict[str, float] = {}  # push-empty holds: service -> monotonic end
        self._hold_timer: asyncio.TimerHandle | None = None
        self.cp_state = "starting"
        self.cp_error = ""
        self.listening = False
        self._report_now = asyncio.Event()
        self._report_backoff = Backoff(base=1.0, cap=10.0)  # 429/503 to a report
        self._report_retry: float | None = None  # seconds to a refused report's next try
        # Zero trust (docs/agent.md): certificates, renewal, the inbound listener.
        self.zt = ZeroTrust(config, self.client, self.upstreams, self._report_now.set)
        self.certs, self.inbound = self.zt.certs, self.zt.inbound
        self._stopped = asyncio.Event()
        self._pending_metrics: list[dict[str, Any]] = []
        self._pending_instances: list[dict[str, Any]] = []
        self._pending_ejections: list[dict[str, Any]] = []
        self._answered_interval_ms: int | None = None
        self._pending_keys: set[str] = set()  # gateway keys used, kept across failed reports
        self._control: asyncio.Task[None] | None = None
        self.dns: DnsServer | None = None
        self.dns_error = ""
        self.handover = HandoverServer(config.data_dir)
        self._inherited: dict[str, socket.socket] = {}  # listening sockets of our predecessor
        self._activated: dict[str, socket.socket] = {}  # ... or of systemd, by address
        # Gateway mode (agents.runtime.gateway): public listeners routed by the snapshot.
        self.gateway: Gateway | None = None
        if config.gateway is not None:
            from agents.runtime.gateway.listener import Gateway

            self.gateway = Gateway(config.gateway, zone=config.zone, contexts=self.contexts,
                                   runtime=self._gateway_target, retire=self.zt.forget)
        self._gateway_refused: str | None = None

    # lifecycle
    async def start(self) -> None:
        data_dir = self.config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.zt.load()  # cached certificates: mTLS serves with the control plane down
        stored = load_snapshot(data_dir)
        if stored is not None:
            self._apply(stored, persist=False)
            log.info("serving from persisted snapshot revision %s", stored.revision)
        # An agent still running on this data dir (a restart): share its listening sockets,
        # so not one connection is refused or reset while it drains (handover.py).
        self._inherited = await asyncio.to_thread(take_over, data_dir)
        self._activated = activated_sockets()
        await self._start_data_plane()
        if self.gateway is not None:  # its sockets hand over across a restart as ours do
            await self.gateway.start(self._inherited_socket, self._offer_listeners)
        admin_key = listener_key("admin", join_host_port(self.config.admin_host,
                                                         self.config.admin_port))
        self.admin_server = await start_admin(self, self.config.admin_host, self.config.admin_port,
                                              sock=self._inherited_socket(admin_key))
        self.admin_address = _bound(self.admin_server, self.config.admin_host)
        for unused in [*self._inherited.values(), *self._activated.values()]:
            unused.close()  # the config no longer has them (our copies only)
        self._inherited, self._activated = {}, {}
        self._offer_listeners(admin_key, self.admin_server)
        await self.handover.start()
        await self._start_dns()
        self.identity = load_identity(data_dir, control_plane=self.config.control_plane,
                                      node=self.config.node)
        self._control = asyncio.create_task(self._control_loop(), name="meshagent-control")

    async def _start_data_plane(self) -> None:
        """One listener per upstream in this process (a Supervisor runs workers instead)."""
        for runtime in self.upstreams:
            await self._listen(runtime)
        await self._start_inbound()
        self.listening = True

    async def _start_inbound(self) -> None:
        inbound = self.inbound
        if inbound is None:
            return
        key = listener_key("inbound", join_host_port(inbound.config.host, inbound.config.port))
        server = await inbound.start(self._inherited_socket(key))
        self._offer_listeners(key, server)
        self.contexts.extend(inbound.contexts)  # drained on stop like the outbound ones
        self.servers.append(server)
        log.info("inbound (mTLS) listening on %s, advertised as %s:%s",
                 _bound(server, inbound.config.host), inbound.config.advertise_host,
                 inbound.config.advertise_port)

    async def _listen(self, runtime: UpstreamRuntime, *, reuse_port: bool = False) -> None:
        host, port = runtime.config.host, runtime.config.port
        ctx = ListenerContext(runtime, self.metrics)
        start = start_tcp_listener if runtime.protocol == "tcp" else start_http_listener
        key = listener_key(runtime.protocol, runtime.config.listen)
        server = await start(ctx, host, port, reuse_port=reuse_port,
                             sock=self._inherited_socket(key))
        self._offer_listeners(key, server)
        self.contexts.append(ctx)
        runtime.bound = _bound(server, host)
        self.servers.append(server)
        log.info("upstream %s listening on %s (%s)", runtime.service, runtime.bound,
                 runtime.protocol)

    async def _start_dns(self) -> None:
        if self.config.dns is None:
            return
        from agents.runtime.dns import DnsServer

        server = DnsServer(self)
        try:
            await server.start(*self.config.dns)
        except OSError as exc:
            if self.config.dns_explicit:
                raise
            # The default address only: DNS is a convenience, the proxy is not.
            self.dns_error = f"{join_host_port(*self.config.dns)}: {exc.strerror or exc}"
            log.warning("dns not served: %s", self.dns_error)
            return
        self.dns = server
        log.info("dns on %s (udp and tcp)", server.address)

    def _inherited_socket(self, key: str) -> socket.socket | None:
        """The predecessor's socket for listener KEY, else systemd's for its address."""
        taken = self._inherited.pop(key, None)
        activated = self._activated.pop(key.split(" ", 1)[1], None)
        if taken is not None and activated is not None:
            activated.close()  # the same socket twice (systemd's, handed on): one is enough
        return taken or activated

    def _offer_listeners(self, key: str, server: asyncio.Server) -> None:
        """What the next agent may take over (one socket per key: a name that resolves
        to several addresses is bound anew by the successor instead)."""
        if len(server.sockets) == 1:
            self.handover.sockets[key] = server.sockets[0]

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain, then close (bounded by grace_s, default drain_s): stop accepting (a
        successor that took the listeners over keeps accepting on them), answer the
        requests in flight with Connection: close, close keep-alive connections as they go
        idle, then close whatever is left."""
        self._stopped.set()
        self.listening = False
        self.handover.close()
        if self.inbound is not None:
            self.inbound.close_server()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        for server in self.servers:
            server.close()
        if self.gateway is not None:
            self.gateway.close_servers()
        for ctx in self.contexts:
            ctx.draining = True
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.drain_s if grace_s is None else grace_s)
        while loop.time() < deadline and any(c.inflight or c.connections for c in self.contexts):
            for ctx in self.contexts:
                for conn in list(ctx.connections):
                    conn.drain(DRAIN_IDLE_S)
            await asyncio.sleep(0.05)
        for ctx in self.contexts:
            for conn in list(ctx.connections):
                conn.close()
        for runtime in [*self.upstreams, *self.route_targets.values()]:
            runtime.pool.close_all()
        if self.gateway is not None:
            await self.gateway.close()
        if self.admin_server is not None:
            self.admin_server.close()
        if self.dns is not None:
            await self.dns.stop()
        for server in [*self.servers, *([self.admin_server] if self.admin_server else [])]:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    # snapshots
    def offer(self, raw: object) -> bool:
        """Validate and apply a snapshot from the control plane (agents.runtime.admission):
        an invalid upstream is refused alone, the rest applies; a snapshot whose top
        level is unusable is refused whole. Returns whether anything was applied."""
        self._last_raw = raw
        revision = raw.get("revision") if isinstance(raw, dict) else None
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            revision = None
        try:
            admission = admit(raw, self.snapshot, holds=self._holds, now=time.monotonic())
        except SnapshotError as exc:
            self.nack = {"revision": revision, "reason": str(exc)[:1000]}
            log.warning("refused snapshot revision %s: %s", revision, exc)
            self._report_now.set()
            return False
        for name in admission.held.keys() - self._holds.keys():
            log.warning("push-empty protection: %s lost every endpoint by deregistration; "
                        "serving its last endpoints for %.0fs", name,
                        admission.held[name] - time.monotonic())
        self._holds = admission.held
        self._apply(admission.snapshot, persist=True)
        if self._gateway_refused:
            admission.refused["gateway"] = self._gateway_refused
        if admission.refused:
            reason = "; ".join(admission.refused.values())
            self.nack = {"revision": revision, "reason": reason[:1000],
                         "refused": dict(list(admission.refused.items())[:200])}
            log.warning("revision %s applied except %s", revision, ", ".join(admission.refused))
        else:
            self.nack = None
        if admission.held:
            self._recheck_holds_at(min(admission.held.values()))
        self._report_now.set()
        return True

    def _recheck_holds_at(self, until: float) -> None:
        """Offer the last snapshot again when a push-empty hold ends."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._hold_timer is not None:
            self._hold_timer.cancel()

        def again() -> None:
            self._hold_timer = None
            if self._last_raw is not None:
                self.offer(self._last_raw)

        self._hold_timer = loop.call_later(max(0.0, until - time.monotonic()) + 0.01, again)

    def _apply(self, snapshot: Snapshot, *, persist: bool) -> None:
        self.zt.apply(snapshot.security)
        kept = apply_upstreams(self.upstreams, self.route_targets, snapshot.upstreams,
                               self._route_target)
        for service, runtime in self.route_targets.items():
            if service not in kept:
                self.zt.forget(runtime)
        self.route_targets = kept
        if self.gateway is not None:  # a refused section keeps the last one (in raw too)
            self._gateway_refused = self.gateway.offer(snapshot)
        self.snapshot = snapshot
        if persist:
            try:
                save_snapshot(self.config.data_dir, snapshot)
            except OSError as exc:  # still applied: serving matters more than the disk copy
                log.error("cannot persist snapshot: %s", exc)

    def _route_target(self, service: str, source: str) -> UpstreamRuntime:
        """The runtime of a service a route splits to without this host calling it
        directly: no listener; dialled (mTLS too) as SOURCE, the routing upstream's."""
        runtime = UpstreamRuntime(Upstream(service, "", 0, "http", source), self.config.zone)
        self.zt.adopt(runtime)
        return runtime

    def _gateway_target(self, service: str, source: str) -> UpstreamRuntime:
        """The runtime of a service the gateway's routes send to (one per service, its
        subsets as views): dialled as the mesh dials it, mTLS with the gateway's identity."""
        runtime = UpstreamRuntime(Upstream(service, "", 0, "http", source), self.config.zone)
        self.zt.adopt(runtime, identity=self.zt.gateway)
        return runtime

    # control plane
    async def _control_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                if self.identity is None:
                    self.cp_state = "enrolling"
                    self.identity = await self._enroll()
                await self._session(self.identity)
            except Unauthorized as exc:
                log.warning("agent token refused (%s); enrolling again", exc)
                self.identity = None
                forget_identity(self.config.data_dir)
                self.cp_state, self.cp_error = "unauthorized", str(exc)
                await asyncio.sleep(self.backoff.next())
            except (ControlPlaneError, OSError) as exc:
                self.cp_state, self.cp_error = "disconnected", str(exc)
                delay = self.backoff.next()
                if isinstance(exc, EnrollmentRefused):
                    delay = max(delay, 5.0)  # a bad token will not fix itself quickly
                log.warning("control plane: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _enroll(self) -> Identity:
        proposed = pending_agent_token(self.config.data_dir,
                                       control_plane=self.config.control_plane,
                                       node=self.config.node)
        answer = await self.client.enroll({
            "token": self.config.token,
            "agent_token": proposed,
            "node": self.config.node,
            "zone": self.config.zone,
            "version": __version__,
            "upstreams": self._upstreams_payload(),
            **self._gateway_payload(),
            **self.zt.payload(),
        })
        agent_id, token = answer.get("agent_id"), answer.get("agent_token")
        if not isinstance(agent_id, str) or not isinstance(token, str) or not agent_id or not token:
            raise ControlPlaneError("enroll: answer lacks agent_id/agent_token")
        identity = Identity(agent_id, token, self.config.control_plane, self.config.node)
        save_identity(self.config.data_dir, identity)
        log.info("enrolled as agent %s", agent_id)
        return identity

    async def _session(self, identity: Identity) -> None:
        """Report, then watch and report side by side until one of them fails. A
        report the control plane answers 429/503 (its back-pressure) ends nothing:
        the watch goes on, and the report is sent again after its Retry-After."""
        try:
            await self._report(identity)
        except ControlPlaneBusy as exc:
            self._report_busy(exc)
        self.cp_state, self.cp_error = "connected", ""
        self.backoff.reset()
        tasks = [asyncio.create_task(self._watch(identity)),
                 asyncio.create_task(self._report_loop(identity)),
                 asyncio.create_task(self.zt.renewer.run(identity.agent_id, identity.agent_token,
                                                         self.zt.wanted))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, identity: Identity) -> None:
        seen: int | None = None
        while True:
            raw = await self.client.get_config(identity.agent_id, identity.agent_token,
                                               revision=seen, wait_s=self.long_poll_s)
            revision = raw.get("revision")
            valid_revision = isinstance(revision, int) and not isinstance(revision, bool)
            if seen is None or revision != seen:
                self.offer(raw)
            if valid_revision:
                seen = revision  # type: ignore[assignment]
            else:
                await asyncio.sleep(self.backoff.next())  # unusable answer: do not spin

    async def _report_loop(self, identity: Identity) -> None:
        while True:
            # Jittered (±10 %): a fleet started together does not report in step.
            interval = self.report_interval_ms() / 1000 * random.uniform(0.9, 1.1)
            if self._report_retry is not None:  # a refused report: again after Retry-After,
                delay, self._report_retry = self._report_retry, None  # not sooner for an ack
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._report_now.wait()
            try:
                await self._report(identity)
            except ControlPlaneBusy as exc:
                self._report_busy(exc)
            else:
                self._report_backoff.reset()

    def _report_busy(self, exc: ControlPlaneBusy) -> None:
        """A report refused for now: its windows stay pending (_report), the next one
        goes after the Retry-After (or a backoff of 0.5 s growing to 10 s), the watch goes on."""
        self._report_retry = max(exc.retry_after, self._report_backoff.next())
        log.info("control plane busy (%s); reporting again in %.1fs", exc, self._report_retry)

    async def _report(self, identity: Identity) -> None:
        self._report_now.clear()
        windows = self._pending_metrics + self.metrics.drain()
        windows += self.zt.inbound_windows()
        if self.gateway is not None:
            windows += self.gateway.metrics.drain()
        self._pending_metrics = []
        instances = self._pending_instances + self.instance_windows.drain(self._endpoints())
        self._pending_instances = []
        ejections = self._pending_ejections + [
            event for u in self._runtimes() for event in u.drain_events()]
        self._pending_ejections = []
        gateway = self._gateway_payload()
        keys_used = self._pending_keys
        if self.gateway is not None:
            keys_used |= self.gateway.drain_keys_used()
            if keys_used:  # coarse by design: the control plane stores the report's minute
                gateway["gateway"]["keys_used"] = sorted(keys_used)[:MAX_KEYS_USED]
        self._pending_keys = set()
        payload = {
            "version": __version__,
            "applied_revision": self.snapshot.revision if self.snapshot else None,
            "nack": self.nack,
            "upstreams": self._upstreams_payload(),
            "services": [s.as_report() for s in self.config.services],
            "metrics": windows,
            "instances": instances,
            "ejections": ejections,
            **gateway,
            **self.zt.payload(),
        }
        try:
            answer = await self.client.report(identity.agent_id, identity.agent_token, payload)
        except BaseException:
            # Not lost: the next report carries them, bounded so a long outage cannot grow us.
            self._pending_metrics = windows[-MAX_PENDING_WINDOWS:]
            self._pending_instances = instances[-MAX_PENDING_WINDOWS:]
            self._pending_ejections = ejections[-MAX_PENDING_WINDOWS:]
            self._pending_keys = set(sorted(keys_used)[:MAX_KEYS_USED])
            raise
        self._answered_interval_ms = answered_interval_ms(answer)

    def report_interval_ms(self) -> int:
        """The last report's answer's interval (the control plane stretches it as the
        fleet grows: registry/pacing.py), else the snapshot's, else 2 s."""
        if self._answered_interval_ms is not None:
            return self._answered_interval_ms
        return self.snapshot.report_interval_ms if self.snapshot else 2000

    def _runtimes(self) -> list[UpstreamRuntime]:
        gateway = self.gateway.runtimes() if self.gateway is not None else []
        return [*self.upstreams, *self.route_targets.values(), *gateway]

    def _endpoints(self) -> list[tuple[str, tuple[Endpoint, ...]]]:
        """(service, endpoints) of every runtime, whose counters the instance windows read."""
        return [(u.service, u.state.endpoints) for u in self._runtimes()]

    def _gateway_payload(self) -> dict[str, Any]:
        gateway = self.config.gateway
        return {"gateway": gateway.as_report()} if gateway is not None else {}

    def _upstreams_payload(self) -> list[dict[str, Any]]:
        return [{"service": u.service, "protocol": u.protocol, "listen": u.bound,
                 "source": u.source} for u in self.upstreams]

    # admin (agents.runtime.admin.AdminSource)
    def ready(self) -> bool:
        return self.snapshot is not None and self.listening

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.config.node,
            "zone": self.config.zone,
            "version": __version__,
            "agent_id": self.identity.agent_id if self.identity else None,
            "applied_revision": self.snapshot.revision if self.snapshot else None,
            "nack": self.nack,
            "control_plane": {"url": self.config.control_plane, "state": self.cp_state,
                              "error": self.cp_error},
            "ready": self.ready(),
            "upstreams": [u.stats() for u in self.upstreams],
            "route_targets": [u.stats() for u in self.route_targets.values()],
            "edges": self.metrics.totals_json(),
            "pending_metric_windows": len(self._pending_metrics),
            "dns": {"listen": self.dns.address if self.dns else None, "error": self.dns_error},
            "certificates": self.zt.certificates(),
            "inbound": self.inbound.stats() if self.inbound is not None else None,
            "gateway": self.gateway.stats() if self.gateway is not None else None,
        }

    def prometheus(self) -> str:
        runtimes = self._runtimes()
        endpoints = [(u.service, e) for u in runtimes for e in u.state.endpoints]
        revision = self.snapshot.revision if self.snapshot else None
        gateway = ""
        if self.gateway is not None:
            from agents.runtime.gateway.metrics import render_gateway

            gateway = render_gateway(self.gateway.metrics)
        return render_prometheus(self.metrics, revision, endpoints) + render_resilience(
            runtimes) + self.zt.prometheus() + gateway

    def config_json(self) -> dict[str, Any] | None:
        return self.snapshot.raw if self.snapshot else None


def _bound(server: asyncio.Server, host: str) -> str:
    sockets = server.sockets
    if not sockets:
        return ""
    port = sockets[0].getsockname()[1]
    return join_host_port(host, int(port))
