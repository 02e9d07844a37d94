"""`meshconsole up` end to end: real processes, embedded Redis, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

READY_WITHIN = 60.0
STOP_WITHIN = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat:
            parents[pid] = int(stat[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def leftovers(pids: set[int], sessions: set[int]) -> list[str]:
    """Live processes among PIDS, or in one of SESSIONS (catches double forks)."""
    left = []
    for pid in all_pids():
        stat = proc_stat(pid)
        if not stat or stat[0] == "Z":
            continue
        if pid in pids or int(stat[4]) in sessions:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            left.append(f"{pid}: {cmd}")
    return left


class Up:
    def __init__(self, tmp_path: Path, *extra: str, data_dir_first: bool = False) -> None:
        self.data_dir = tmp_path / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path = tmp_path / f"up-{uuid.uuid4().hex[:6]}.out"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env["MESH_CHANNEL_PREFIX"] = f"up{uuid.uuid4().hex[:8]}"
        env.pop("MESH_ADMIN_PASSWORD", None)
        self.env = env  # the embedded defaults: commands run beside `up` must use them too
        data_dir = ["--data-dir", str(self.data_dir)]
        args = [*data_dir, "up"] if data_dir_first else ["up", *data_dir]
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "meshconsole.cli",
                    *args,
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    @property
    def output(self) -> str:
        return self.out_path.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"up exited early:\n{self.output}"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"/readyz not 200 within {READY_WITHIN}s:\n{self.output}")
        deadline = time.monotonic() + 10
        while "Stop with Ctrl-C" not in self.output:
            assert time.monotonic() < deadline, self.output
            time.sleep(0.1)

    def stop(self) -> tuple[int, list[str]]:
        """SIGINT; (exit code, processes it started that are still alive)."""
        pids = descendants(self.proc.pid)
        sessions = pids | {self.proc.pid}
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"up did not exit within {STOP_WITHIN}s:\n{self.output}") from None
        time.sleep(0.2)
        return code, leftovers(pids, sessions)

    def kill(self) -> None:
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_up(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Up] = []

    def start(*extra: str, data_dir_first: bool = False) -> Up:
        up = Up(tmp_path, *extra, data_dir_first=data_dir_first)
        started.append(up)
        return up

    yield start
    for up in started:
        if up.proc.poll() is None:
            up.kill()


def login(url: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    client.get("/admin/login/")
    response = client.post(
        "/admin/login/",
        data={
            "username": "admin",
            "password": password,
            "next": "/admin/",
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": url + "/admin/login/"},
    )
    assert response.status_code == 302 and response.headers["location"] == "/admin/", response.text
    return client


def test_up_prints_working_credentials_once_and_stops_cleanly(start_up) -> None:
    up = start_up()
    up.wait_ready()
    out = up.output
    password = re.search(r"password:\s+(\S+)", out)
    token = re.search(r"enrollment token:\s+(mesh-enroll-\S+)", out)
    assert password and token, out
    assert "embedded" in out and "redis.sock" in out
    assert f"data dir {up.data_dir}" in out  # `up --data-dir DIR`: the option after the command
    assert "resetpassword" in out  # how to get a new password, said where it is printed

    client = login(up.url, password.group(1))
    assert client.get("/api/v1/services/").status_code == 200
    client.close()
    enrolled = httpx.post(
        up.url + "/api/v1/agents/enroll/",
        json={
            "token": token.group(1),
            "node": "host-t",
            "zone": "zone-1",
            "version": "0.1.0",
            "upstreams": [],
        },
        timeout=10,
    )
    assert enrolled.status_code == 201, enrolled.text

    # A child that dies is restarted.
    web_pid = int(re.search(r"started\s+web \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    os.kill(web_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "restarting web" not in up.output:
        assert time.monotonic() < deadline, up.output
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(up.url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, up.output
        time.sleep(0.3)

    code, left = up.stop()
    assert code == 0, up.output
    assert left == [], left

    # The second start: no new credentials, a pointer to where they were.
    again = start_up()
    again.wait_ready()
    assert "printed at first start" in again.output
    assert "password:" not in again.output and "mesh-enroll-" not in again.output
    assert "resetpassword" in again.output and "enrolltoken" in again.output
    code, left = again.stop()
    assert code == 0 and left == [], again.output


def test_up_refuses_a_busy_port(start_up, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "meshconsole.cli",
                "up",
                "--data-dir",
                str(tmp_path / "d"),
                "--bind",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        )
    assert result.returncode == 1
    assert "already in use" in result.stdout
