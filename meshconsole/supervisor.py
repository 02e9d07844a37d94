"""`meshconsole up`: the all-in-one.

Migrates, ensures the admin user and an enrollment token (printed once, on the
run that creates them), then starts and supervises the ASGI server, a Celery
worker and Celery beat — plus the embedded Redis when REDIS_URL is unset, and
the demo mesh with --demo. Each child runs in its own process group so a
Ctrl-C in the terminal reaches only the supervisor, which then stops the
children in order (SIGTERM, wait, SIGKILL) and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from meshconsole import embedded_redis
from meshconsole.web import parse_bind

READY_TIMEOUT = 120.0  # first start on a slow disk migrates a while
STOP_TIMEOUT = 10.0
STABLE_AFTER = 30.0  # a child that ran this long before dying starts a fresh crash count
MAX_RESTARTS = 5
BACKOFF_BASE = 1.0  # seconds before the first restart; doubles per quick crash
BACKOFF_MAX = 30.0
ECHO_LINES, ECHO_WINDOW = 40, 30.0  # at most this many echoed lines per child per window

# Child output goes to DATA_DIR/logs/<name>.log; the terminal gets only what
# looks like a problem (and the indented lines of a traceback that follow it).
_PROBLEM = re.compile(rb"\b(WARNING|ERROR|CRITICAL|Traceback)\b")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while `up` was still setting up."""


def say(message: str = "") -> None:
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
        log_dir.mkdir(parents=True, exist_ok=True)

    # -- starting ---------------------------------------------------------
    def add(self, spec: ChildSpec) -> Child:
        child = Child(spec=spec, log_path=self.log_dir / f"{spec.name}.log")
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        with child.log_path.open("ab") as log:
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
        with log_path.open("ab") as log:
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


def tail(path: Path, lines: int) -> list[str]:
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


# -- the embedded Redis ----------------------------------------------------
def start_redis(data_dir: Path, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """In its own session: the terminal's ^C must not stop Redis before the
    workers that still use it."""
    return embedded_redis.start(data_dir, timeout=timeout, new_session=True)


# -- the control plane's first start ---------------------------------------
@dataclass
class Credentials:
    password: str | None  # None: it came from MESH_ADMIN_PASSWORD
    enrollment_token: str


def prepare_database() -> tuple[int, Credentials | None]:
    """Migrate; create the admin user and an enrollment token if there is no admin yet."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections["default"])
    pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    call_command("migrate", interactive=False, verbosity=0)

    from agents.enrollment import enrollment_token_create

    user_model = get_user_model()
    credentials = None
    if not user_model.objects.filter(username="admin").exists():
        from_env = os.environ.get("MESH_ADMIN_PASSWORD", "")
        password = from_env or secrets.token_urlsafe(12)
        admin = user_model.objects.create_superuser("admin", "", password)
        token = enrollment_token_create(user=admin, description="created by meshconsole up")
        credentials = Credentials(password=None if from_env else password, enrollment_token=token)
    connections.close_all()
    return pending, credentials


def database_label() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or 'localhost'}/{db['NAME']}"


def credentials_text(url: str, credentials: Credentials, data_dir_hint: str) -> str:
    password = credentials.password or "(the one in MESH_ADMIN_PASSWORD)"
    return f"""
  First start: an admin account and an agent enrollment token were created.
  They are shown only this once — keep them somewhere safe.

      console:           {url}
      username:          admin
      password:          {password}
      enrollment token:  {credentials.enrollment_token}

  To add a host, write an agent.yaml there:

      control_plane: {url.rstrip("/")}
      token: {credentials.enrollment_token}
      node: host-a
      zone: zone-1
      data_dir: /var/lib/meshagent
      services: [{{name: orders, address: 127.0.0.1, port: 8081}}]

  and run:  meshagent run -c agent.yaml
  New tokens: meshconsole{data_dir_hint} enrolltoken
"""


def returning_text(url: str, data_dir_hint: str) -> str:
    return f"""
  Log in at {url} as admin with the password printed at first start.
  Forgot it?  meshconsole{data_dir_hint} changepassword admin
  New agent enrollment token:  meshconsole{data_dir_hint} enrolltoken
"""


# -- helpers ----------------------------------------------------------------
def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def local_url(host: str, port: int) -> str:
    """The URL to reach a server bound on HOST:PORT from this machine."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def core_children(*, bind: str, data_dir: Path) -> list[ChildSpec]:
    py = sys.executable
    concurrency = str(min(4, max(2, os.cpu_count() or 2)))
    return [
        ChildSpec("web", [py, "-m", "meshconsole.cli", "web", "--bind", bind]),
        ChildSpec(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "meshconsole",
                "worker",
                "-l",
                "info",
                "--concurrency",
                concurrency,
                "--without-gossip",
                "--without-mingle",
                "-n",
                "meshconsole@%h",
            ],
        ),
        ChildSpec(
            "beat",
            [
                py,
                "-m",
                "celery",
                "-A",
                "meshconsole",
                "beat",
                "-l",
                "info",
                "-s",
                str(data_dir / "celerybeat-schedule"),
            ],
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshconsole up",
        description="Run the whole control plane (web, worker, beat, embedded Redis) "
        "and supervise it until Ctrl-C.",
    )
    parser.add_argument("--bind", default="127.0.0.1:8000", metavar="HOST:PORT")
    parser.add_argument(
        "--data-dir", metavar="DIR", help="default: $MESH_DATA_DIR, else ~/.meshconsole"
    )
    parser.add_argument("--demo", action="store_true", help="add demo services, agents and traffic")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo every log line")
    return parser


# -- up ---------------------------------------------------------------------
class Up:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host, self.port = parse_bind(args.bind)
        if args.data_dir:
            os.environ["MESH_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
        self.data_dir = Path(
            os.environ.get("MESH_DATA_DIR") or Path.home() / ".meshconsole"
        ).expanduser()
        self.url = local_url(self.host, self.port)
        default_dir = (Path.home() / ".meshconsole").resolve()
        is_default = self.data_dir.resolve() == default_dir
        self.dir_hint = "" if is_default else f" --data-dir {self.data_dir}"
        self.redis: subprocess.Popen[bytes] | None = None
        self.supervisor: ProcessSupervisor | None = None
        self.setting_up = True
        self.signals = 0
        self.stop = threading.Event()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.stop.set()
        if self.supervisor is not None and self.signals > 1:
            self.supervisor.force.set()
        if self.setting_up:
            raise Interrupted()

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.on_signal)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
        os.environ["PYTHONUNBUFFERED"] = "1"
        credentials: Credentials | None = None
        code = 1
        try:
            if not port_is_free(self.host, self.port):
                say(
                    f"meshconsole: {self.host}:{self.port} is already in use "
                    "(is meshconsole already running?); choose another with --bind HOST:PORT"
                )
                return 1
            self.data_dir.mkdir(parents=True, exist_ok=True)
            say(f"meshconsole: data dir {self.data_dir}")
            if not os.environ.get("REDIS_URL"):
                self.redis = start_redis(self.data_dir)
                os.environ["REDIS_URL"] = embedded_redis.socket_url(self.data_dir)
                url = os.environ["REDIS_URL"]
                say(f"meshconsole: redis     embedded, {url} (pid {self.redis.pid})")
            else:
                say("meshconsole: redis     REDIS_URL")
            pending, credentials = prepare_database()
            say(f"meshconsole: database  {database_label()} ({pending} migrations applied)")
            self.supervisor = ProcessSupervisor(
                log_dir=self.data_dir / "logs", env=dict(os.environ), verbose=self.args.verbose
            )
            for spec in core_children(bind=f"{self.host}:{self.port}", data_dir=self.data_dir):
                child = self.supervisor.add(spec)
                assert child.proc is not None
                say(f"meshconsole: started   {spec.name} (pid {child.proc.pid})")
            say(f"meshconsole: logs in   {self.data_dir / 'logs'}")
            self.setting_up = False
            if self.stop.is_set():
                return 0
            code = self.supervise(credentials)
            credentials = None if code == 0 else credentials
            return code
        except Interrupted:
            say("\nmeshconsole: interrupted during start-up")
            return 0
        except RuntimeError as exc:
            say(f"meshconsole: {exc}")
            return 1
        finally:
            self.setting_up = False
            self.shutdown()
            if credentials is not None:
                # Start-up failed after the credentials were made: they must not be lost.
                say(credentials_text(self.url, credentials, self.dir_hint))

    def supervise(self, credentials: Credentials | None) -> int:
        assert self.supervisor is not None
        deadline = time.monotonic() + READY_TIMEOUT
        next_probe = 0.0
        ready = False
        while not self.stop.is_set():
            self.supervisor.poll()
            if self.supervisor.fatal:
                say(f"meshconsole: {self.supervisor.fatal}; stopping everything")
                return 1
            now = time.monotonic()
            if not ready and now >= next_probe:
                if is_ready(self.url):
                    ready = True
                    self.announce(credentials)
                    credentials = None
                    if self.args.demo:
                        self.start_demo()
                elif now > deadline:
                    say(
                        f"meshconsole: {self.url}readyz did not answer 200 within "
                        f"{READY_TIMEOUT:.0f}s; see {self.data_dir / 'logs' / 'web.log'}"
                    )
                    return 1
                next_probe = now + 0.5
            self.stop.wait(0.25)
        return 0

    def announce(self, credentials: Credentials | None) -> None:
        say(f"\nmeshconsole is ready: {self.url}")
        if credentials is not None:
            say(credentials_text(self.url, credentials, self.dir_hint))
        else:
            say(returning_text(self.url, self.dir_hint))
        if self.host in ("0.0.0.0", "::"):
            say("  Listening on all interfaces: set MESH_ALLOWED_HOSTS to the names you use.")
        say("  Stop with Ctrl-C.\n")

    def start_demo(self) -> None:
        from meshconsole import demo

        assert self.supervisor is not None
        try:
            demo.start(
                self.supervisor,
                data_dir=self.data_dir,
                control_plane=self.url.rstrip("/"),
                announce=say,
            )
        except Exception as exc:  # the control plane keeps running without its demo
            say(f"meshconsole: the demo could not start: {exc}")

    def shutdown(self) -> None:
        if self.supervisor is not None and self.supervisor.children:
            say("meshconsole: stopping ...")
            self.supervisor.stop_all()
        if self.redis is not None:
            embedded_redis.stop(self.redis)
            self.redis = None
        if self.supervisor is not None:
            say("meshconsole: stopped")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_bind(args.bind)
    except argparse.ArgumentTypeError as exc:
        say(f"meshconsole up: {exc}")
        return 2
    return Up(args).run()
