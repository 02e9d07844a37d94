"""The demo mesh: which services exist, where they run, whom they call; and the
files that describe it (agent.yaml and backends.json per node)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHECK = {"type": "http", "path": "/health", "interval": "2s", "timeout": "1s", "rise": 2, "fall": 2}
TRAFFIC_SOURCE = "loadgen"
TRAFFIC_NODE = "host-a"


@dataclass(frozen=True)
class DemoService:
    name: str
    description: str
    tags: tuple[str, ...]
    latency_ms: float
    error_rate: float = 0.0
    calls: tuple[tuple[str, float], ...] = ()  # (downstream, probability per request)


SERVICES: dict[str, DemoService] = {
    s.name: s
    for s in [
        DemoService(
            "frontend",
            "Web storefront",
            ("demo", "edge"),
            4,
            calls=(("users", 0.9), ("orders", 0.5)),
        ),
        DemoService("users", "Accounts and sessions", ("demo", "core"), 3),
        DemoService(
            "orders",
            "Order intake and orchestration",
            ("demo", "core"),
            12,
            calls=(("inventory", 1.0), ("payments", 0.8), ("shipping", 0.5)),
        ),
        DemoService("inventory", "Stock levels", ("demo",), 5),
        DemoService(
            "payments",
            "Card payments (flaky provider)",
            ("demo", "pci"),
            28,
            error_rate=0.04,
            calls=(("users", 0.5),),
        ),
        DemoService("shipping", "Shipping quotes and labels", ("demo",), 8),
    ]
}

# node -> (zone, services it runs). Orders and payments run twice, across zones.
# On each node a downstream is called by at most one local service, so every
# upstream listener of an agent is for a distinct service.
PLACEMENT: dict[str, tuple[str, tuple[str, ...]]] = {
    "host-a": ("zone-1", ("frontend", "users")),
    "host-b": ("zone-1", ("orders", "inventory", "payments")),
    "host-c": ("zone-2", ("orders", "payments", "shipping")),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    service: str
    source: str
    port: int


@dataclass
class NodePlan:
    node: str
    zone: str
    admin_port: int
    services: dict[str, int] = field(default_factory=dict)  # service -> backend port
    upstreams: list[Upstream] = field(default_factory=list)

    def upstream_url(self, service: str) -> str:
        port = next(u.port for u in self.upstreams if u.service == service)
        return f"http://127.0.0.1:{port}"


@dataclass
class DemoPlan:
    dir: Path
    control_plane: str
    token: str
    nodes: list[NodePlan]
    traffic_rps: float = 15.0

    def node_dir(self, node: str) -> Path:
        return self.dir / node

    @property
    def traffic_target(self) -> str:
        node = next(n for n in self.nodes if n.node == TRAFFIC_NODE)
        return node.upstream_url("frontend")


def build_plan(
    *, demo_dir: Path, control_plane: str, token: str, port: Callable[[], int] = free_port
) -> DemoPlan:
    taken: set[int] = set()

    def distinct(source: Callable[[], int] = port) -> int:
        # A port bound then released may be handed out again by the next bind.
        while (candidate := source()) in taken:
            pass
        taken.add(candidate)
        return candidate

    port = distinct
    nodes = []
    for node, (zone, names) in PLACEMENT.items():
        plan = NodePlan(node=node, zone=zone, admin_port=port())
        for name in names:
            plan.services[name] = port()
            for downstream, _ in SERVICES[name].calls:
                plan.upstreams.append(Upstream(downstream, name, port()))
        if node == TRAFFIC_NODE:
            plan.upstreams.append(Upstream("frontend", TRAFFIC_SOURCE, port()))
        nodes.append(plan)
    return DemoPlan(dir=demo_dir, control_plane=control_plane, token=token, nodes=nodes)


def agent_config(plan: DemoPlan, node: NodePlan) -> dict[str, Any]:
    return {
        "control_plane": plan.control_plane,
        "token": plan.token,
        "node": node.node,
        "zone": node.zone,
        "data_dir": str(plan.node_dir(node.node) / "agent"),
        "admin": f"127.0.0.1:{node.admin_port}",
        "services": [
            {
                "name": name,
                "address": "127.0.0.1",
                "port": port,
                "tags": ["demo", node.zone],
                "check": dict(CHECK),
            }
            for name, port in node.services.items()
        ],
        "upstreams": [
            {
                "service": u.service,
                "listen": f"127.0.0.1:{u.port}",
                "protocol": "http",
                "source": u.source,
            }
            for u in node.upstreams
        ],
    }


def backends_config(node: NodePlan) -> dict[str, Any]:
    return {
        "node": node.node,
        "services": [
            {
                "name": name,
                "port": port,
                "latency_ms": SERVICES[name].latency_ms,
                "error_rate": SERVICES[name].error_rate,
                "calls": [
                    {"service": d, "probability": p, "url": node.upstream_url(d)}
                    for d, p in SERVICES[name].calls
                ],
            }
            for name, port in node.services.items()
        ],
    }


def write_files(plan: DemoPlan) -> dict[str, tuple[Path, Path]]:
    """Write each node's agent.yaml and backends.json; {node: (agent.yaml, backends.json)}."""
    written = {}
    for node in plan.nodes:
        directory = plan.node_dir(node.node)
        (directory / "agent").mkdir(parents=True, exist_ok=True)
        agent_yaml = directory / "agent.yaml"
        backends_json = directory / "backends.json"
        agent_yaml.write_text(yaml.safe_dump(agent_config(plan, node), sort_keys=False))
        # The agent's data dir holds its token: keep the file private.
        agent_yaml.chmod(0o600)
        backends_json.write_text(json.dumps(backends_config(node), indent=2))
        written[node.node] = (agent_yaml, backends_json)
    return written
