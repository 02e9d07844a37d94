"""What `pip install meshconsole` gets: a wheel built from the tracked files holds
every Django app and every page and asset of the console (an editable checkout
finds them anyway; a wheel only has what the build put in it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_a_wheel_carries_every_app_template_and_asset(tmp_path: Path) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    source = tmp_path / "src"
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=200,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    apps = sorted(p.parent.name for p in ROOT.glob("*/apps.py"))
    assert {"agents", "gateway", "identity", "journal", "meshcode", "monitoring",
            "policies", "registry"} <= set(apps)
    missing_apps = [a for a in apps if f"{a}/apps.py" not in names]
    assert missing_apps == []
    assets = [str(p.relative_to(ROOT)) for d in ("meshconsole/templates", "meshconsole/static")
              for p in (ROOT / d).rglob("*") if p.is_file()]
    assert len(assets) > 20
    assert [a for a in assets if a not in names] == []
    migrations = [str(p.relative_to(ROOT)) for p in ROOT.glob("*/migrations/0*.py")]
    assert [m for m in migrations if m not in names] == []
