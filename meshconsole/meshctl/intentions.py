"""meshctl intentions: list, add, remove, check (docs/security.md)."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from meshconsole.meshctl.http import Client, CtlError, table


def _http_text(http: dict[str, Any] | None) -> str:
    if not http:
        return ""
    parts = []
    if http.get("methods"):
        parts.append(",".join(http["methods"]))
    if http.get("path_prefix"):
        parts.append(f"{http['path_prefix']}*")
    parts += [f"{k}={v}" for k, v in (http.get("headers") or {}).items()]
    return " ".join(parts)


def intentions_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all("/api/v1/intentions/")
    default = client.request("GET", "/api/v1/intentions/default/")
    rows = [
        [
            str(i["id"]),
            i["source"],
            i["destination"],
            i["action"],
            _http_text(i.get("http")),
            i.get("description") or "",
        ]
        for i in data
    ]
    text = table(rows, ["ID", "SOURCE", "DESTINATION", "ACTION", "HTTP", "DESCRIPTION"])
    return data, f"{text}\ndefault: {default['default_action']}"


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise CtlError(f"--header {item!r}: use 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    return headers


def intentions_add(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    http: dict[str, Any] = {}
    if args.method:
        http["methods"] = args.method
    if args.path_prefix:
        http["path_prefix"] = args.path_prefix
    if args.header:
        http["headers"] = _headers(args.header)
    body = {
        "source": args.source,
        "destination": args.destination,
        "action": args.action,
        "http": http or None,
        "description": args.description or "",
    }
    data = client.request("POST", "/api/v1/intentions/", body)
    return (
        data,
        f"intention {data['id']}: {data['source']} -> {data['destination']} {data['action']}",
    )


def intentions_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"/api/v1/intentions/{urllib.parse.quote(args.id, safe='')}/")
    return {"removed": args.id}, f"removed intention {args.id}"


def intentions_check(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    query: list[tuple[str, str]] = [("source", args.source), ("destination", args.destination)]
    if args.method:
        query += [("method", args.method), ("path", args.path or "/")]
    query += [("header", f"{k}:{v}") for k, v in _headers(args.header or []).items()]
    data = client.request("GET", f"/api/v1/intentions/check/?{urllib.parse.urlencode(query)}")
    verdict = "allowed" if data["allowed"] else "denied"
    return data, f"{verdict}: {data['reason']}"


def add_parsers(groups: Any, json_flag: argparse.ArgumentParser) -> None:
    intentions = groups.add_parser("intentions", help="who may call whom")
    sub = intentions.add_subparsers(dest="command", required=True, metavar="{list,add,rm,check}")
    p = sub.add_parser("list", parents=[json_flag], help="intentions and the default action")
    p.set_defaults(func=intentions_list)
    p = sub.add_parser("add", parents=[json_flag], help="SOURCE DESTINATION allow|deny")
    p.add_argument("source", help="a service name or *")
    p.add_argument("destination", help="a service name or *")
    p.add_argument("action", choices=["allow", "deny"])
    p.add_argument("--method", action="append", help="HTTP method (repeatable)")
    p.add_argument("--path-prefix")
    p.add_argument("--header", action="append", help="'NAME: VALUE' (repeatable)")
    p.add_argument("--description")
    p.set_defaults(func=intentions_add)
    p = sub.add_parser("rm", parents=[json_flag], help="remove intention ID")
    p.add_argument("id")
    p.set_defaults(func=intentions_rm)
    p = sub.add_parser(
        "check", parents=[json_flag], help="would SOURCE be allowed to call DESTINATION"
    )
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("--method", help="HTTP method; omit for a TCP connection")
    p.add_argument("--path")
    p.add_argument("--header", action="append", help="'NAME: VALUE' (repeatable)")
    p.set_defaults(func=intentions_check)
