"""ProcessSupervisor: restarts with backoff, gives up loudly, stops whole process groups."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from meshconsole import supervisor as sup
from meshconsole.supervisor import ChildSpec, ProcessSupervisor


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def supervisor(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = ProcessSupervisor(log_dir=tmp_path / "logs", env=dict(os.environ))
    yield s
    s.stop_all(timeout=2)


def test_crashing_child_is_restarted_then_given_up_loudly(
    supervisor: ProcessSupervisor, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(sup, "BACKOFF_BASE", 0.01)
    child = supervisor.add(
        ChildSpec("crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    )

    def poll_until_failed() -> bool:
        supervisor.poll()
        return child.failed

    wait_until(poll_until_failed)
    out = capsys.readouterr().out
    assert out.count("crasher exited with code 3") == sup.MAX_RESTARTS
    assert "keeps crashing" in out and "boom" in out
    assert supervisor.fatal == "crasher could not be kept running"


def test_non_critical_child_failing_does_not_stop_everything(
    supervisor: ProcessSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sup, "BACKOFF_BASE", 0.01)
    child = supervisor.add(ChildSpec("extra", [sys.executable, "-c", "0"], critical=False))

    def poll_until_failed() -> bool:
        supervisor.poll()
        return child.failed

    wait_until(poll_until_failed)
    assert supervisor.fatal is None


def test_child_output_goes_to_its_log(supervisor: ProcessSupervisor) -> None:
    child = supervisor.add(ChildSpec("talker", [sys.executable, "-c", "print('hello log')"]))
    assert child.proc is not None
    child.proc.wait(10)
    wait_until(lambda: "hello log" in child.log_path.read_text())


def test_stop_kills_stubborn_children_and_their_group(
    supervisor: ProcessSupervisor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    child = supervisor.add(ChildSpec("stubborn", [sys.executable, "-c", script]))
    assert child.proc is not None
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    grandchild = int(pidfile.read_text())
    assert os.getpgid(child.proc.pid) == child.proc.pid != os.getpgrp()
    started = time.monotonic()
    supervisor.stop_all(timeout=1.0)
    assert time.monotonic() - started < 5
    assert child.proc.returncode is not None
    wait_until(lambda: not alive(grandchild), timeout=5)


def test_polite_children_stop_on_sigterm(supervisor: ProcessSupervisor) -> None:
    child = supervisor.add(
        ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    )
    supervisor.stop_all(timeout=5.0)
    assert child.proc is not None and child.proc.returncode == -15


def test_parse_bind_and_local_url() -> None:
    from meshconsole.up import local_url
    from meshconsole.web import parse_bind

    assert parse_bind("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    assert parse_bind("9000") == ("127.0.0.1", 9000)
    assert local_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert local_url("::1", 80) == "http://[::1]:80/"


def test_child_logs_are_private_even_when_they_existed_loose(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = logs / "old.log"
    old.write_text("from an older version\n")
    old.chmod(0o644)
    before = os.umask(0)  # the worst a caller could leave us with
    try:
        s = ProcessSupervisor(log_dir=logs, env=dict(os.environ))
        for name in ("old", "new"):
            child = s.add(ChildSpec(name, [sys.executable, "-c", "print('x')"]))
            assert child.proc is not None
            child.proc.wait(10)
        s.stop_all(timeout=2)
    finally:
        os.umask(before)
    assert {p.name: p.stat().st_mode & 0o777 for p in logs.iterdir()} == {
        "old.log": 0o600,
        "new.log": 0o600,
    }


@pytest.mark.parametrize(
    "value", ["[::1:80", "::1:80", "[::1]x:80", "[nope]:80", "a b:80", "127.0.0.1:\u0668\u0660",
              "127.0.0.1: 80", "nope", "127.0.0.1:"]
)
def test_parse_bind_refuses_what_is_not_host_port(value: str) -> None:
    """"[::1:80" bound [::1]:80 (the brackets stripped, the last colon taken as the port)."""
    import argparse

    from meshconsole.web import parse_bind

    with pytest.raises(argparse.ArgumentTypeError):
        parse_bind(value)


def test_a_bind_address_not_of_this_host_is_not_called_busy() -> None:
    """999.0.0.1 / 192.0.2.1 were reported as "already in use (is meshconsole already running?)"."""
    import socket

    from meshconsole.up import bind_error

    assert bind_error("127.0.0.1", 0) is None
    problem = bind_error("192.0.2.1", 8000)  # TEST-NET-1: never an address of this host
    assert problem is not None and "already in use" not in problem
    assert "not an address of this host" in problem
    assert "not an IP address" in (bind_error("999.0.0.1", 8000) or "")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = bind_error("127.0.0.1", holder.getsockname()[1])
    assert busy is not None and "already in use" in busy


class _GoneTerminal:
    """stdout after `meshconsole up | head -30` exited: every write is a broken pipe."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_terminal_that_went_away_does_not_stop_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`meshconsole up | head -30` then SIGTERM left web, worker, beat and redis running:
    the BrokenPipeError of "stopping ..." ended `up` before it stopped its children."""
    import sys

    from meshconsole.supervisor import ProcessSupervisor, say

    monkeypatch.setattr(sys, "stdout", _GoneTerminal())
    say("meshconsole: stopping ...")
    ProcessSupervisor._echo("web", "a warning line")
