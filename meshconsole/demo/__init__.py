"""`meshconsole up --demo`: demo services, backends, agents and steady traffic,
supervised and stopped with the rest of `up`."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from meshconsole.demo.plan import CHECK, SERVICES, DemoPlan, build_plan, write_files
from meshconsole.supervisor import ChildSpec, ProcessSupervisor

__all__ = ["start", "ensure_services", "meshagent_command"]


def ensure_services() -> list[str]:
    """Create the demo services (with descriptions and tags) that do not exist yet."""
    from agents.runtime.durations import parse_duration_ms
    from registry import services as registry_services
    from registry.models import Service

    created = []
    for spec in SERVICES.values():
        if Service.objects.filter(name=spec.name).exists():
            continue
        registry_services.service_create(
            user=None,
            data={
                "name": spec.name,
                "protocol": "http",
                "description": spec.description,
                "tags": list(spec.tags),
                "check_type": CHECK["type"],
                "check_path": CHECK["path"],
                "check_interval_ms": parse_duration_ms(CHECK["interval"]),
                "check_timeout_ms": parse_duration_ms(CHECK["timeout"]),
                "check_rise": CHECK["rise"],
                "check_fall": CHECK["fall"],
            },
        )
        created.append(spec.name)
    return created


def meshagent_command() -> list[str]:
    """`meshagent` from this environment (next to this Python), else from PATH."""
    script = Path(sys.executable).with_name("meshagent")
    if script.exists():
        return [str(script)]
    found = shutil.which("meshagent")
    if found:
        return [found]
    entry = "import sys; from agents.runtime.cli import main; sys.exit(main())"
    return [sys.executable, "-c", entry]


def prepare(*, data_dir: Path, control_plane: str) -> DemoPlan:
    """Services in the registry, an enrollment token, and the files of each node."""
    from django.db import connections

    from agents.enrollment import enrollment_token_create

    ensure_services()
    token = enrollment_token_create(description="meshconsole up --demo")
    connections.close_all()
    plan = build_plan(demo_dir=data_dir / "demo", control_plane=control_plane, token=token)
    write_files(plan)
    return plan


def start(
    supervisor: ProcessSupervisor,
    *,
    data_dir: Path,
    control_plane: str,
    announce: Callable[[str], None] = print,
) -> DemoPlan:
    plan = prepare(data_dir=data_dir, control_plane=control_plane)
    py = sys.executable
    agent = meshagent_command()
    for node in plan.nodes:
        directory = plan.node_dir(node.node)
        supervisor.add(
            ChildSpec(
                f"demo-{node.node}",
                [
                    py,
                    "-m",
                    "meshconsole.demo.backend",
                    "--config",
                    str(directory / "backends.json"),
                ],
                critical=False,
                tier=2,
            )
        )
        supervisor.add(
            ChildSpec(
                f"agent-{node.node}",
                [*agent, "run", "-c", str(directory / "agent.yaml")],
                critical=False,
                tier=3,
            )
        )
    supervisor.add(
        ChildSpec(
            "traffic",
            [
                py,
                "-m",
                "meshconsole.demo.traffic",
                "--target",
                plan.traffic_target,
                "--rps",
                str(plan.traffic_rps),
            ],
            critical=False,
            tier=4,
        )
    )
    announce("meshconsole: demo mesh started:")
    for node in plan.nodes:
        running = ", ".join(f"{name}:{port}" for name, port in node.services.items())
        admin = f"127.0.0.1:{node.admin_port}"
        announce(f"  {node.node} ({node.zone})  runs {running}; agent admin {admin}")
    announce(
        f"  traffic  ~{plan.traffic_rps:.0f} rps to frontend via host-a's agent "
        f"({plan.traffic_target}); configs in {plan.dir}"
    )
    announce(f"  watch it: {control_plane}/  (topology fills in within ~30s)\n")
    return plan
