"""Steady demo traffic: Poisson arrivals at --rps to --target (a meshagent
upstream listener for `frontend`), over a few realistic paths.

    python -m meshconsole.demo.traffic --target http://127.0.0.1:9100 --rps 15
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from collections import Counter

from meshconsole.demo import httpkit

PATHS = ["/", "/", "/products", "/products/42", "/cart", "/checkout", "/account"]


async def run(target: str, rps: float, report_every: float = 10.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    outcomes: Counter[str] = Counter()
    in_flight = asyncio.Semaphore(64)  # a stuck upstream must not pile up sockets

    async def one() -> None:
        async with in_flight:
            try:
                status, _ = await httpkit.get(target + random.choice(PATHS), timeout=5.0)
                outcomes["ok" if status < 500 else f"http {status}"] += 1
            except (OSError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

    tasks: set[asyncio.Task[None]] = set()
    last_report = time.monotonic()
    while not stop.is_set():
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        try:
            await asyncio.wait_for(stop.wait(), random.expovariate(rps))
        except TimeoutError:
            pass
        if time.monotonic() - last_report >= report_every:
            print(f"traffic: {dict(outcomes)}", flush=True)
            outcomes.clear()
            last_report = time.monotonic()
    for task in list(tasks):
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshconsole.demo.traffic")
    parser.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:9100")
    parser.add_argument("--rps", type=float, default=15.0)
    args = parser.parse_args(argv)
    asyncio.run(run(args.target.rstrip("/"), args.rps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
