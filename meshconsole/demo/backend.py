"""The demo backends of one node: one small HTTP server per service, with a
/health endpoint, realistic latencies, an optional error rate, and real calls
to downstream services through the node's meshagent upstream listeners.

    python -m meshconsole.demo.backend --config DATA_DIR/demo/host-b/backends.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import random
import signal
from pathlib import Path
from typing import Any

from meshconsole.demo import httpkit


class Backend:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.port: int = spec["port"]
        self.latency_ms: float = spec["latency_ms"]
        self.error_rate: float = spec["error_rate"]
        self.calls: list[dict[str, Any]] = spec["calls"]
        self.served = 0

    async def handle(self, method: str, target: str) -> tuple[int, bytes]:
        if target.split("?")[0] == "/health":
            return 200, b'{"status": "ok"}'
        self.served += 1
        # Log-normal: most requests near the median, a tail of slow ones.
        await asyncio.sleep(random.lognormvariate(math.log(self.latency_ms), 0.4) / 1000)
        failed: list[str] = []
        for call in self.calls:
            if random.random() >= call["probability"]:
                continue
            try:
                status, _ = await httpkit.get(call["url"] + target, timeout=5.0)
            except (OSError, TimeoutError):
                status = 599
            if status >= 500:
                failed.append(call["service"])
        if failed:
            body = {"service": self.name, "error": f"upstream failed: {', '.join(failed)}"}
            return 502, json.dumps(body).encode()
        if random.random() < self.error_rate:
            return 500, json.dumps({"service": self.name, "error": "simulated failure"}).encode()
        return 200, json.dumps({"service": self.name, "path": target}).encode()


async def run(config: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    for spec in config["services"]:
        backend = Backend(spec)
        server = await asyncio.start_server(
            functools.partial(httpkit.serve_connection, handler=backend.handle),
            host="127.0.0.1",
            port=backend.port,
        )
        servers.append(server)
        print(f"{config['node']}: {backend.name} listening on 127.0.0.1:{backend.port}", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshconsole.demo.backend")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    asyncio.run(run(json.loads(args.config.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
