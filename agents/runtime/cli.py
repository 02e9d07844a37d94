"""`meshagent run -c agent.yaml`, `meshagent gateway -c gateway.yaml` (run, for a config
with a `gateway:` section) and `meshagent check -c agent.yaml`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agents.runtime import __version__
from agents.runtime.bindings import check_bindings
from agents.runtime.config import AgentConfig, ConfigError, join_host_port, load_config
from agents.runtime.eventloop import event_loop_runner
from agents.runtime.handover import DRAIN_TIMEOUT_S

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshagent", description="meshconsole host agent")
    parser.add_argument("--version", action="version", version=f"meshagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    gateway = sub.add_parser("gateway", help="run the agent in gateway mode (the config must "
                                             "have a gateway: section)")
    for command in (run, gateway):
        _run_options(command)
    check = sub.add_parser("check", help="validate agent.yaml and exit")
    check.add_argument("-c", "--config", required=True, help="path to agent.yaml")
    return parser


def _run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("-c", "--config", required=True, help="path to agent.yaml")
    run.add_argument("--workers", type=int, default=1,
                     help="proxy worker processes sharing the listeners (SO_REUSEPORT); "
                          "1 (default) proxies in this process")
    run.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT_S, metavar="SECONDS",
                     help="on SIGTERM, how long requests in flight and keep-alive connections "
                          f"get to finish (default {DRAIN_TIMEOUT_S:g})")
    run.add_argument("--log-level", default="INFO")


def summary(config: AgentConfig) -> str:
    upstreams = ", ".join(f"{u.service}@{u.listen}/{u.protocol}" for u in config.upstreams)
    services = ", ".join(s.name for s in config.services)
    inbound = config.inbound
    mtls = (f", inbound (mTLS) {join_host_port(inbound.host, inbound.port)} advertised as "
            f"{join_host_port(inbound.advertise_host, inbound.advertise_port)}"
            if inbound is not None else "")
    gateway = config.gateway
    edge = (f", gateway {gateway.name} on " + ", ".join(
        f"{'https' if li.tls else 'http'}://{li.listen}" for li in gateway.listeners)
        if gateway is not None else "")
    return (f"ok: node {config.node}, {len(config.services)} service(s) [{services}], "
            f"{len(config.upstreams)} upstream(s) [{upstreams}], control plane "
            f"{config.control_plane}{mtls}{edge}")


async def _run(config: AgentConfig, *, config_path: str = "", workers: int = 1,
               log_level: str = "INFO", drain_s: float = DRAIN_TIMEOUT_S) -> None:
    from agents.runtime.agent import Agent

    if workers > 1:
        from agents.runtime.supervisor import Supervisor

        agent: Agent = Supervisor(config, config_path=config_path, workers=workers,
                                  log_level=log_level, drain_s=drain_s)
    else:
        agent = Agent(config, drain_s=drain_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.request_stop)
    try:
        await agent.start()
    except OSError:
        await agent.stop(grace_s=0.0)  # what did start (admin, control loop) stops with it
        raise
    print(f"meshagent {__version__}: node {config.node}, admin on {agent.admin_address}",
          flush=True)
    try:
        await agent.wait_stopped()
    finally:
        await agent.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        check_bindings(config, str(args.config))  # what run would fail to bind, said first
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "gateway" and config.gateway is None:
        print(f"{args.config}: gateway: required by `meshagent gateway` (or use `meshagent run`)",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        print(summary(config))
        return 0
    if not 0 <= args.drain_timeout <= 3600:
        print(f"meshagent: --drain-timeout must be between 0 and 3600 seconds, "
              f"got {args.drain_timeout:g}", file=sys.stderr)
        return EXIT_CONFIG
    if args.workers < 1:
        print(f"meshagent: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with event_loop_runner() as runner:
            runner.run(_run(config, config_path=str(Path(args.config).resolve()),
                            workers=args.workers, log_level=args.log_level,
                            drain_s=args.drain_timeout))
    except OSError as exc:  # e.g. a listen port another process holds
        print(f"meshagent: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
