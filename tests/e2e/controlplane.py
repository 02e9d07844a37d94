"""A real control plane for end-to-end tests: its own database (a SQLite file,
or a fresh PostgreSQL database when the run uses DATABASE_URL), the run's Redis,
its own Celery queue, and real web / worker / beat processes."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.e2e.procs import Processes, free_port, http, python, wait_until


@contextmanager
def _database(data_dir: Path) -> Iterator[str]:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{data_dir / 'e2e.sqlite3'}"
        return
    import psycopg

    name = f"mesh_e2e_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ControlPlane:
    def __init__(self, data_dir: Path, procs: Processes, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.procs = procs
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.enroll_token = ""

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [python(), "manage.py", *args], env=self.env, cwd=Path(__file__).resolve().parents[2],
            capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip()

    def setup(self) -> None:
        self.manage("migrate", "-v0")
        self.token = self.manage(
            "shell", "-c",
            "from django.contrib.auth.models import User;"
            "from meshconsole.apitokens import api_token_create;"
            "u=User.objects.create_superuser('e2e','e2e@example.com','e2e-password-1');"
            "print(api_token_create(user=u))",
        ).splitlines()[-1]
        self.enroll_token = self.manage(
            "shell", "-c",
            "from agents.enrollment import enrollment_token_create; print(enrollment_token_create())",
        ).splitlines()[-1]

    def start_web(self, workers: int = 1) -> None:
        if workers == 1:
            argv = [python(), "-m", "uvicorn", "meshconsole.asgi:application", "--host",
                    "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        else:  # as `meshconsole up` runs it: `meshconsole web --workers N`
            argv = [python(), "-m", "meshconsole.cli", "web", "--bind", f"127.0.0.1:{self.port}",
                    "--workers", str(workers)]
        self.procs.start("web", argv, self.env)
        wait_until(lambda: http("GET", f"{self.url}/readyz", timeout=2)[0] == 200, 30, what="web /readyz")

    def start_workers(self) -> None:
        self.procs.start(
            "worker",
            [python(), "-m", "celery", "-A", "meshconsole", "worker", "-l", "warning",
             "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            self.env,
        )
        self.procs.start(
            "beat",
            [python(), "-m", "celery", "-A", "meshconsole", "beat", "-l", "warning",
             "-s", str(self.data_dir / "beat-schedule")],
            self.env,
        )

    def api(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        return http(method, f"{self.url}{path}", body, {"Authorization": f"Token {self.token}"})

    def register(self, service: dict[str, Any], ports: Iterable[int]) -> dict[int, str]:
        """Create SERVICE (an API document) with one loopback instance per port;
        the instance ids by port."""
        status, body = self.api("POST", "/api/v1/services/", service)
        assert status == 201, body
        ids = {}
        for port in ports:
            status, body = self.api("POST", f"/api/v1/services/{service['name']}/instances/",
                                    {"address": "127.0.0.1", "port": port, "zone": "zone-1"})
            assert status == 201, body
            ids[port] = body["id"]
        return ids

    def wait_all_passing(self, service: str, timeout: float = 30) -> None:
        def all_passing() -> bool:
            _, page = self.api("GET", f"/api/v1/services/{service}/instances/?page_size=1000")
            instances = page["results"]  # type: ignore[index]
            return bool(instances) and all(i["status"] == "passing" for i in instances)

        wait_until(all_passing, timeout, what=f"every instance of {service} passing")


@contextmanager
def control_plane(
    tmp_path: Path, *, workers: bool = True, web_workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[ControlPlane]:
    data_dir = tmp_path / "cp"
    data_dir.mkdir()
    procs = Processes(tmp_path)
    with _database(data_dir) as database_url:
        extra = env or {}
        env = dict(os.environ)
        env.update(
            MESH_DATA_DIR=str(data_dir),
            DATABASE_URL=database_url,
            MESH_CELERY_QUEUE=f"e2e-{secrets.token_hex(4)}",
            MESH_CHANNEL_PREFIX=f"e2e{secrets.token_hex(4)}",
            MESH_HEARTBEAT_TTL="6",
        )
        env.update(extra)
        cp = ControlPlane(data_dir, procs, env)
        try:
            cp.setup()
            cp.start_web(web_workers)
            if workers:
                cp.start_workers()
            yield cp
        except BaseException:
            for name in ("web", "worker", "beat"):
                print(f"----- {name} log -----\n{procs.log(name)[-4000:]}")
            raise
        finally:
            procs.stop_all()
