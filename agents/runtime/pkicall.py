"""Calling `agents.runtime.pki` (keys, CSRs, reading certificates) without importing
`cryptography` into the agent: a short-lived child process per call, or in place when
this process already carries `cryptography` (see pki's docstring)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TIMEOUT_S = 60.0
_ROOT = str(Path(__file__).resolve().parents[2])  # where `agents` is importable from


def call(op: str, **args: Any) -> Any:
    """pki.run(OP, ARGS); ValueError when it fails (the caller keeps what it has)."""
    if "cryptography.x509" in sys.modules:
        from agents.runtime import pki

        return pki.run(op, args)
    try:
        done = subprocess.run([sys.executable, "-m", "agents.runtime.pki"],
                              input=json.dumps({"op": op, "args": args}), capture_output=True,
                              text=True, timeout=TIMEOUT_S, cwd=_ROOT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"certificate tool: {exc}") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"certificate tool failed ({done.returncode}): {tail}") from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ValueError(f"certificate tool: {answer.get('error', answer)}"
                         if isinstance(answer, dict) else "certificate tool: bad answer")
    return answer["ok"]


def new_key_and_csr(identity: str) -> tuple[bytes, str]:
    """(PKCS#8 PEM of a new private key, a CSR for IDENTITY signed by it)."""
    answer = call("csr", identity=identity)
    return str(answer["key"]).encode(), str(answer["csr"])


def leaf_facts(pems: list[str]) -> list[dict[str, Any] | None]:
    answer = call("leaves", pems=pems)
    return [a if isinstance(a, dict) else None for a in answer]


def subjects(pems: list[str]) -> list[str | None]:
    return [s if isinstance(s, str) else None for s in call("subjects", pems=pems)]
