"""Process supervision for `meshconsole up`: children in their own process
groups, restarted with backoff when they die, stopped in tiers with nothing
left behind.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
`up`, which then stops the children in order (SIGTERM, wait, SIGKILL of the
whole group). What `up` starts, and in which order, is in meshconsole.up.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STOP_TIMEOUT = 10.0
STABLE_AFTER = 30.0  # a child that ran this long before dying starts a fresh crash count
MAX_RESTARTS = 5
BACKOFF_BASE = 1.0  # seconds before the first restart; doubles per quick crash
BACKOFF_MAX = 30.0
ECHO_LINES, ECHO_WINDOW = 40, 30.0  # at most this many echoed lines per child per window
LOG_MODE = 0o600  # logs can hold tokens and addresses: the owner's only

# Child output goes to DATA_DIR/logs/<name>.log; the terminal gets only what
# looks like a problem (and the indented lines of a traceback that follow it).
_PROBLEM = re.compile(rb"\b(WARNING|ERROR|CRITICAL|Traceback)\b")


def say(message: str = "") -> None:
    # The terminal may be gone (`meshconsole up | head`, a closed ssh session): a failed
    # write must not end `up` before it stops its children (they would be orphans).
    with contextlib.suppress(OSError):
        print(message, flush=True)


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    critical: bool = True  # giving up on a critical child stops everything
    tier: int = 0  # higher tiers are stopped first


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    failed: bool = False
    reader: threading.Thread | None = None
    pgids: set[int] = field(default_factory=set)


class ProcessSupervisor:
    """Start children in their own process groups, restart the ones that die,
    stop them all on request."""

    def __init__(self, *, log_dir: Path, env: dict[str, str], verbose: bool = False) -> None:
        self.log_dir = log_dir
        self.env = env
        self.verbose = verbose
        self.children: list[Child] = []
        self.stopping = False
        self.fatal: str | None = None
        self.force = threading.Event()
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- starting ---------------------------------------------------------
    def add(self, spec: ChildSpec) -> Child:
        child = Child(spec=spec, log_path=self.log_dir / f"{spec.name}.log")
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        with open_log(child.log_path) as log:
            log.write(
                f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                f"{' '.join(child.spec.argv)}\n".encode()
            )
        proc = subprocess.Popen(
            child.spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # own session and process group: the tty's ^C is ours
        )
        child.proc = proc
        child.pgids.add(proc.pid)
        child.started_at = time.monotonic()
        child.restart_at = None
        assert proc.stdout is not None
        child.reader = threading.Thread(
            target=self._pump, args=(child.spec.name, proc.stdout, child.log_path), daemon=True
        )
        child.reader.start()

    def _pump(self, name: str, stream: IO[bytes], log_path: Path) -> None:
        in_problem = False
        window_start, shown, muted = time.monotonic(), 0, False
        with open_log(log_path) as log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                if self.verbose:
                    show = True
                elif _PROBLEM.search(line):
                    show = in_problem = True
                else:
                    show = in_problem = in_problem and line[:1] in (b" ", b"\t")
                if not show:
                    continue
                # A child failing in a loop must not bury the terminal: the log has it all.
                now = time.monotonic()
                if now - window_start >= ECHO_WINDOW:
                    window_start, shown, muted = now, 0, False
                shown += 1
                if shown > ECHO_LINES:
                    if not muted:
                        muted = True
                        self._echo(name, f"... more in {log_path}")
                    continue
                self._echo(name, line.decode("utf-8", "replace").rstrip())
        stream.close()

    @staticmethod
    def _echo(name: str, text: str) -> None:
        with contextlib.suppress(OSError):  # the terminal may be gone: see say()
            sys.stdout.write(f"{name:>12} | {text}\n")
            sys.stdout.flush()

    # -- watching ---------------------------------------------------------
    def running(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is None]

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.running() if c.proc is not None]

    def poll(self) -> None:
        """Notice dead children; restart them with backoff or give up loudly."""
        now = time.monotonic()
        for child in self.children:
            if child.failed or self.stopping or child.proc is None:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    say(f"meshconsole: restarting {child.spec.name}")
                    self._spawn(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            self._reap_group(child)
            ran_for = now - child.started_at
            child.crashes = 1 if ran_for >= STABLE_AFTER else child.crashes + 1
            if child.crashes > MAX_RESTARTS:
                self._give_up(child, code)
                continue
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (child.crashes - 1))
            say(
                f"meshconsole: {child.spec.name} exited with code {code} after {ran_for:.1f}s; "
                f"restarting in {delay:.1f}s (attempt {child.crashes}/{MAX_RESTARTS})"
            )
            child.restart_at = now + delay

    def _give_up(self, child: Child, code: int) -> None:
        child.failed = True
        if child.reader is not None:
            child.reader.join(timeout=1)
        say(f"\nmeshconsole: {child.spec.name} keeps crashing (last exit code {code}); giving up.")
        say(f"  last lines of {child.log_path}:")
        for line in tail(child.log_path, 15):
            say(f"    {line}")
        if child.spec.critical:
            self.fatal = f"{child.spec.name} could not be kept running"

    # -- stopping ---------------------------------------------------------
    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        self.stopping = True
        for tier in sorted({c.spec.tier for c in self.children}, reverse=True):
            self._stop_tier([c for c in self.children if c.spec.tier == tier], timeout)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=1)

    def _stop_tier(self, children: list[Child], timeout: float) -> None:
        alive = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in alive:
            assert child.proc is not None
            try:
                child.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for child in alive:
            assert child.proc is not None
            while child.proc.poll() is None and time.monotonic() < deadline:
                if self.force.wait(0.05):
                    break
            if child.proc.poll() is None:
                say(f"meshconsole: {child.spec.name} did not stop in time; killing it")
                self._kill_group(child.proc.pid)
                child.proc.wait()
        for child in children:
            self._reap_group(child)

    def _reap_group(self, child: Child) -> None:
        # Whatever the child left in its group (pool workers, helpers) goes too.
        for pgid in child.pgids:
            self._kill_group(pgid)
        child.pgids.clear()

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def open_log(path: Path) -> IO[bytes]:
    """PATH for appending, created 0600 (and tightened to it if it was looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, LOG_MODE)
    return os.fdopen(fd, "ab")


def tail(path: Path, lines: int) -> list[str]:
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]
