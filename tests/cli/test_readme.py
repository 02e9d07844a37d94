"""The README's first two commands: independent, on Python 3.11, and the
second is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_the_two_commands_use_python_311_and_separate_environments() -> None:
    run, test = readme_commands()
    venvs = []
    for command in (run, test):
        found = re.match(r"python3\.11 -m venv (\S+) && \. (\S+)/bin/activate && ", command)
        assert found, command
        assert found.group(1) == found.group(2)
        venvs.append(found.group(1))
    assert venvs[0] != venvs[1]
    assert run.endswith("pip install -e . && meshconsole up --demo")
    assert test.endswith('pip install -e ".[dev]" && pytest')


def test_ci_runs_the_readmes_test_command() -> None:
    _, test = readme_commands()
    venv = test.split()[3]
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"python3.11 -m venv {venv}\n" in ci
    assert f'{venv}/bin/pip install -q -e ".[dev]"' in ci
    assert f'export PATH="$PWD/{venv}/bin:$PATH"' in ci
    assert re.search(r"^env -u DATABASE_URL -u REDIS_URL pytest$", ci, re.M)
