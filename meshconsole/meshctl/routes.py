"""meshctl routes: a service's subsets and L7 routes (docs/policies.md "Routes and subsets").

    meshctl routes get SERVICE              the document as YAML (with its version)
    meshctl routes set -f FILE SERVICE      replace it (YAML or JSON; - = stdin); a
                                            `version` in FILE must be the current one
    meshctl routes history SERVICE
    meshctl routes rollback N SERVICE       (or SERVICE N)
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from agents.runtime.yamlfile import load_yaml
from meshconsole.meshctl.http import Client, CtlError, jsonable, table

READ_ONLY = ("service", "updated_at", "updated_by")


def _url(service: str, tail: str = "") -> str:
    return f"/api/v1/services/{urllib.parse.quote(service, safe='')}/routes/{tail}"


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100).rstrip("\n")


def _document(answer: dict[str, Any]) -> dict[str, Any]:
    """What `set -f` takes back: the answer without its read-only fields."""
    return {k: v for k, v in answer.items() if k not in READ_ONLY}


def _summary(answer: dict[str, Any]) -> str:
    routes = answer.get("routes") or []
    return (
        f"routes of {answer.get('service')} v{answer.get('version')}: "
        f"{len(answer.get('subsets') or {})} subset(s), {len(routes)} route(s)"
    )


def routes_get(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    answer = client.request("GET", _url(args.service))
    return answer, _yaml(_document(answer))


def _read(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CtlError(f"{path}: {exc}", 2) from None
    try:
        data = load_yaml(text)  # JSON is YAML; a key given twice is refused
    except ValueError as exc:
        raise CtlError(f"{path}: {exc}", 2) from None
    if not isinstance(data, dict):
        raise CtlError(f"{path}: expected a mapping with subsets and routes", 2)
    return jsonable(data, path)


def routes_set(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {k: v for k, v in _read(args.file).items() if k not in READ_ONLY}
    answer = client.request("PUT", _url(args.service), body)
    return answer, _summary(answer)


def routes_history(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    versions = client.request("GET", _url(args.service, "versions/"))
    if not versions:
        return versions, f"{args.service} has no routes versions yet"
    rows = [
        [
            str(v["version"]),
            str(v.get("created_at") or ""),
            str(v.get("created_by") or ""),
            str(len((v.get("document") or {}).get("subsets") or {})),
            ", ".join(r.get("name", "") for r in (v.get("document") or {}).get("routes") or [])
            or "-",
        ]
        for v in versions
    ]
    return versions, table(rows, ["VERSION", "CREATED", "BY", "SUBSETS", "ROUTES"])


def _rollback_args(first: str, second: str) -> tuple[str, int]:
    """(service, version) from `N SERVICE` or `SERVICE N`."""
    if first.isdigit():
        return second, int(first)
    if second.isdigit():
        return first, int(second)
    raise CtlError("rollback: give the version number N and the SERVICE", 2)


def routes_rollback(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    service, version = _rollback_args(args.first, args.second)
    answer = client.request("POST", _url(service, f"versions/{version}/rollback/"))
    return answer, f"rolled back to v{version}: {_summary(answer)}"


def add_parsers(groups: Any, json_flag: argparse.ArgumentParser) -> None:
    routes = groups.add_parser("routes", help="subsets and L7 routes of a service")
    sub = routes.add_subparsers(dest="command", required=True,
                                metavar="{get,set,history,rollback}")
    p = sub.add_parser("get", parents=[json_flag], help="the routes document as YAML")
    p.add_argument("service")
    p.set_defaults(func=routes_get)
    p = sub.add_parser("set", parents=[json_flag], help="replace the routes of SERVICE")
    p.add_argument("-f", "--file", required=True, help="YAML or JSON file; - for stdin")
    p.add_argument("service")
    p.set_defaults(func=routes_set)
    p = sub.add_parser("history", parents=[json_flag], help="the saved versions, newest first")
    p.add_argument("service")
    p.set_defaults(func=routes_history)
    p = sub.add_parser("rollback", parents=[json_flag],
                       help="restore version N as a new version")
    p.add_argument("first", metavar="N")
    p.add_argument("second", metavar="SERVICE")
    p.set_defaults(func=routes_rollback)
