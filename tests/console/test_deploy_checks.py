"""`check --deploy`: every security warning has a MESH_* setting that answers it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TLS = {
    "MESH_HSTS_SECONDS": "31536000",
    "MESH_HSTS_INCLUDE_SUBDOMAINS": "1",
    "MESH_HSTS_PRELOAD": "1",
    "MESH_SSL_REDIRECT": "1",
    "MESH_SECURE_COOKIES": "1",
    "MESH_PROXY_SSL_HEADER": "1",
}


def check_deploy(tmp_path: Path, extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(TLS))}
    env.update(extra, MESH_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="meshconsole.settings")
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    return out.stdout + out.stderr


@pytest.mark.timeout(240)
def test_check_deploy_with_the_tls_settings_has_no_security_warning(tmp_path: Path) -> None:
    loopback = check_deploy(tmp_path, {})
    # Off by default (plain HTTP on loopback), so the check says so...
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in loopback
    # ... and the TLS settings answer every one of them.
    assert "security.W" not in check_deploy(tmp_path, TLS)


def test_tls_settings_reach_django() -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SECURE_PROXY_SSL_HEADER,"
        " s.SESSION_COOKIE_SECURE)"
    )
    env = {**os.environ, **TLS, "DJANGO_SETTINGS_MODULE": "meshconsole.settings"}
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.split("\n")[0] == "31536000 True ('HTTP_X_FORWARDED_PROTO', 'https') True"
