"""Failed requests across one agent restart under 200 requests/s of keep-alive traffic.

    python bench/agent_restart.py [--runs 3] [--root CHECKOUT] [--mode MODE ...]

Real `meshagent run` processes (taken from CHECKOUT, default this one, so an
older checkout can be measured the same way), an in-process backend and fake
control plane, 8 keep-alive client connections paced at 200 requests/s in all,
nothing retried (tests/agents/restarts.py). `handover`: a new agent is started,
then the old one gets SIGTERM (what an ExecReload / socket handover does);
`stop-start`: SIGTERM, wait for the exit, start again (`systemctl restart`; the
new agent serves from its snapshot on disk); `socket-activation`: the same with
the listening sockets held by this script as systemd holds a .socket unit's
(LISTEN_FDS). Prints ok / failed per run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agents.restarts import ROOT, Load, kill, mesh, restart, terminate  # noqa: E402

MODES = ("handover", "stop-start", "socket-activation")


async def once(root: Path, mode: str) -> Load:
    with tempfile.TemporaryDirectory() as tmp:
        async with mesh(Path(tmp), root) as m:
            load = Load(m.listen_port)
            new = await restart(m, load, mode)
            if new is not None:
                await terminate(new)
                await kill(new)
            return load


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="checkout whose agents/runtime the agent processes run")
    parser.add_argument("--mode", choices=MODES, action="append")
    args = parser.parse_args()
    for mode in args.mode or MODES:
        for run in range(args.runs):
            load = await once(args.root.resolve(), mode)
            print(f"{mode:10} run {run + 1}: {load.ok:5d} ok, {load.failed:4d} failed "
                  f"{load.reasons or ''}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
