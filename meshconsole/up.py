"""`meshconsole up`: the all-in-one.

Migrates, ensures the admin user and an enrollment token (printed once, on the
run that creates them, see meshconsole.bootstrap), then runs under one
ProcessSupervisor the embedded Redis (when REDIS_URL is unset), the ASGI
server, a Celery worker and Celery beat — and the demo mesh with --demo.
Redis is a child like the others: killed, it comes back on the same socket
and every client reconnects to it.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from meshconsole import bootstrap, datadir, embedded_redis
from meshconsole.bootstrap import Credentials
from meshconsole.env import EnvError, env_int
from meshconsole.supervisor import ChildSpec, ProcessSupervisor, say
from meshconsole.web import parse_bind

READY_TIMEOUT = 120.0  # first start on a slow disk migrates a while
REDIS_TIMEOUT = 10.0
REDIS_TIER = -1  # stopped last: the workers still use it while they stop
# Web worker processes behind the one port (uvicorn's workers); channels_redis
# carries websocket fan-out between them. Two fit this 2-core class of machine.
DEFAULT_WEB_WORKERS = 2


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while `up` was still setting up."""


def bind_error(host: str, port: int) -> str | None:
    """Why the web server could not listen on HOST:PORT, or None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use (is meshconsole already running?)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {host}:{port}: {host} is not an address of this host"
            if isinstance(exc, socket.gaierror):
                return f"cannot listen on {host}:{port}: {host} is not an IP address or known name"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


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


def redis_child(data_dir: Path) -> ChildSpec:
    return ChildSpec("redis", embedded_redis.server_argv(data_dir), tier=REDIS_TIER)


def web_workers() -> int:
    """MESH_WEB_WORKERS (default DEFAULT_WEB_WORKERS), at least 1."""
    workers = env_int("MESH_WEB_WORKERS", DEFAULT_WEB_WORKERS)
    if workers < 1:
        raise EnvError(f"MESH_WEB_WORKERS={workers} must be at least 1")
    return workers


def core_children(*, bind: str, data_dir: Path, web_workers: int = 1) -> list[ChildSpec]:
    py = sys.executable
    concurrency = str(min(4, max(2, os.cpu_count() or 2)))
    celery = [py, "-m", "celery", "-A", "meshconsole"]
    web = [py, "-m", "meshconsole.cli", "web", "--bind", bind, "--workers", str(web_workers)]
    return [
        ChildSpec("web", web),
        ChildSpec(
            "worker",
            [
                *celery,
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
            [*celery, "beat", "-l", "info", "-s", str(data_dir / "celerybeat-schedule")],
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


class Up:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host, self.port = parse_bind(args.bind)
        if args.data_dir:
            os.environ["MESH_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
        self.data_dir = datadir.resolve()
        self.url = local_url(self.host, self.port)
        is_default = self.data_dir.resolve() == datadir.DEFAULT.resolve()
        self.dir_hint = "" if is_default else f" --data-dir {self.data_dir}"
        self.supervisor: ProcessSupervisor | None = None
        self.workers = web_workers()
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
        try:
            problem = bind_error(self.host, self.port)
            if problem is not None:
                say(f"meshconsole: {problem}; choose another with --bind HOST:PORT")
                return 1
            datadir.tighten(self.data_dir)
            say(f"meshconsole: data dir {self.data_dir}")
            self.supervisor = ProcessSupervisor(
                log_dir=self.data_dir / "logs", env=dict(os.environ), verbose=self.args.verbose
            )
            if not os.environ.get("REDIS_URL"):
                self.start_redis()
            else:
                say("meshconsole: redis     REDIS_URL")
            pending, credentials = bootstrap.prepare_database()
            database = bootstrap.sqlite_path()
            datadir.tighten(self.data_dir, [database] if database else [])
            label = bootstrap.database_label()
            say(f"meshconsole: database  {label} ({pending} migrations applied)")
            # The children's environment: REDIS_URL as set above.
            self.supervisor.env = dict(os.environ)
            children = core_children(
                bind=f"{self.host}:{self.port}", data_dir=self.data_dir, web_workers=self.workers
            )
            for spec in children:
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
                say(bootstrap.credentials_text(self.url, credentials, self.dir_hint))

    def start_redis(self) -> None:
        assert self.supervisor is not None
        socket_path = embedded_redis.socket_path_in(self.data_dir)
        embedded_redis.claim_socket(socket_path)
        child = self.supervisor.add(redis_child(self.data_dir))
        assert child.proc is not None
        embedded_redis.wait_until_answers(
            socket_path, child.proc, REDIS_TIMEOUT, self.data_dir / "redis.log"
        )
        os.environ["REDIS_URL"] = embedded_redis.socket_url(self.data_dir)
        url = os.environ["REDIS_URL"]
        say(f"meshconsole: redis     embedded, {url} (pid {child.proc.pid})")

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
            say(bootstrap.credentials_text(self.url, credentials, self.dir_hint))
        else:
            say(bootstrap.returning_text(self.url, self.dir_hint))
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
            say("meshconsole: stopped")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_bind(args.bind)
        up = Up(args)
    except (argparse.ArgumentTypeError, EnvError) as exc:
        say(f"meshconsole up: {exc}")
        return 2
    return up.run()
