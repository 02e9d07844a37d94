"""Loaded with `-p tests.plugin` before Django: gives the run its own data dir
and, unless REDIS_URL is set, a real embedded redis-server (as `meshconsole up`
would), so the suite runs on the embedded defaults with nothing else running."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_data_dir = Path(tempfile.mkdtemp(prefix="meshtest-"))
os.environ.setdefault("MESH_DATA_DIR", str(_data_dir))
os.environ.setdefault("MESH_CHANNEL_PREFIX", f"asgitest{os.getpid()}")
_redis: subprocess.Popen[bytes] | None = None

if not os.environ.get("REDIS_URL"):
    from meshconsole import embedded_redis

    _redis = embedded_redis.start(_data_dir)
    os.environ["REDIS_URL"] = embedded_redis.socket_url(_data_dir)


def _cleanup() -> None:
    if _redis is not None:
        embedded_redis.stop(_redis)
    shutil.rmtree(_data_dir, ignore_errors=True)


atexit.register(_cleanup)
