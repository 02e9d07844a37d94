"""`meshctl`: the REST API from the command line, for people and scripts.

    meshctl services list [--tag T] [--health H] [--search S]
    meshctl services get NAME
    meshctl services register NAME [--protocol http|tcp] [--check-type T] [--check-path P]
                                   [--interval 5s] [--timeout 2s] [--rise N] [--fall N]
                                   [--tag T ...] [--description D]
                                   [--expect-status 200-399] [--body TEXT]
                                   [--header 'NAME: VALUE' ...]
    meshctl services deregister NAME
    meshctl instances list SERVICE
    meshctl instances maintenance|drain|enable|disable SERVICE ID
    meshctl instances weight SERVICE ID N
    meshctl instances bulk SERVICE [--tag T ...] [--meta k=v ...] [--all]
                          --action maintenance|drain|enable|disable|weight [--weight N]
    meshctl instances explain SERVICE ID
    meshctl agents list
    meshctl agents remove NODE
    meshctl agents allow-reenroll NODE
    meshctl tokens list | create [--ttl 24h] [--uses N] [--description D] | revoke PREFIX
    meshctl intentions list
    meshctl intentions add SOURCE DESTINATION allow|deny [--method M ...] [--path-prefix P]
                           [--header 'NAME: VALUE' ...] [--description D]
    meshctl intentions rm ID
    meshctl intentions check SOURCE DESTINATION [--method M --path P] [--header 'N: V' ...]
    meshctl routes get SERVICE | set -f FILE SERVICE | history SERVICE | rollback N SERVICE
    meshctl gateway list | create NAME | rm NAME
    meshctl gateway routes list GW | set GW -f routes.yaml [--version N] | rm GW ROUTE
    meshctl gateway consumers list | add NAME [--subject S ...] [--tag T ...] | rm NAME
    meshctl gateway keys list CONSUMER | add CONSUMER (the key is printed once) | rm CONSUMER PREFIX
    meshctl gateway providers list | set NAME -f provider.yaml | rm NAME
    meshctl diff -f mesh.yaml [-f DIR ...] [--prune]
    meshctl apply -f mesh.yaml [--prune] [--dry-run=server] [-m MESSAGE]
    meshctl export [-o FILE]
    meshctl history
    meshctl rollback N [--dry-run=server]

`--json` prints the API's JSON instead of a table. MESH_URL (default
http://127.0.0.1:8000) and MESH_TOKEN (see `meshconsole apitoken USERNAME`)
come from the environment. Standard library only: it runs wherever Python does.

Exit status: 0 ok, 1 the API refused (message on stderr; for diff/apply one
`file:line: field: message` line per error), 2 bad usage (a YAML file that
does not parse included), 3 the control plane could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

from meshconsole.meshctl import agents, gateway, intentions, mesh, routes
from meshconsole.meshctl.http import DEFAULT_URL, Client, CtlError, table


def health_text(health: dict[str, int] | None) -> str:
    if not health:
        return "-"
    return f"{health.get('passing', 0)}/{health.get('total', 0)} passing"


def show_services(services: list[dict[str, Any]]) -> str:
    if not services:
        return "no services"
    rows = [
        [
            s["name"],
            s.get("protocol", ""),
            health_text(s.get("health")),
            ",".join(s.get("tags") or []) or "-",
            s.get("description") or "",
        ]
        for s in services
    ]
    return table(rows, ["NAME", "PROTOCOL", "HEALTH", "TAGS", "DESCRIPTION"])


def show_service(service: dict[str, Any]) -> str:
    check = service.get("check") or {}
    check_text = f"{check.get('type', '-')}"
    if check.get("type") == "http":
        check_text += f" {check.get('path', '')}"
    check_text += (
        f" every {check.get('interval')} (timeout {check.get('timeout')}, "
        f"rise {check.get('rise')}, fall {check.get('fall')})"
    )
    fields = [
        ("name", service["name"]),
        ("protocol", service.get("protocol", "")),
        ("description", service.get("description") or "-"),
        ("tags", ", ".join(service.get("tags") or []) or "-"),
        ("check", check_text),
        ("health", health_text(service.get("health"))),
    ]
    return "\n".join(f"{key + ':':<13}{value}" for key, value in fields)


def show_instances(service: str, instances: list[dict[str, Any]]) -> str:
    if not instances:
        return f"{service} has no instances"
    rows = [
        [
            i["id"],
            f"{i['address']}:{i['port']}",
            i.get("zone") or "-",
            str(i.get("weight", "")),
            i.get("status", ""),
            i.get("node") or "-",
            i.get("last_heartbeat") or "-",
            i.get("explanation") or i.get("status_reason") or "",
        ]
        for i in instances
    ]
    return table(
        rows, ["ID", "ADDRESS", "ZONE", "WEIGHT", "STATUS", "NODE", "LAST HEARTBEAT", "REASON"]
    )


# -- commands -----------------------------------------------------------------
def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def services_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    query = {
        k: v for k, v in (("tag", args.tag), ("health", args.health), ("search", args.search)) if v
    }
    path = "/api/v1/services/" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = client.list_all(path)
    return data, show_services(data)


def services_get(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.request("GET", f"/api/v1/services/{quote(args.name)}/")
    return data, show_service(data)


def parse_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise CtlError(f"--header {item!r}: expected 'NAME: VALUE'", 2)
        headers[name.strip()] = value.strip()
    return headers


def services_register(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"name": args.name, "protocol": args.protocol}
    if args.description is not None:
        body["description"] = args.description
    if args.tags:
        body["tags"] = args.tags
    check = {
        key: value
        for key, value in (
            ("type", args.check_type),
            ("path", args.check_path),
            ("interval", args.interval),
            ("timeout", args.timeout),
            ("rise", args.rise),
            ("fall", args.fall),
            ("expect_status", args.expect_status),
            ("body", args.body),
            ("headers", parse_headers(args.headers) if args.headers else None),
        )
        if value is not None
    }
    if check:
        body["check"] = check
    data = client.request("POST", "/api/v1/services/", body)
    return data, f"registered {data['name']}\n{show_service(data)}"


def services_deregister(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"/api/v1/services/{quote(args.name)}/")
    return {"deregistered": args.name}, f"deregistered {args.name}"


def instances_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all(f"/api/v1/services/{quote(args.service)}/instances/")
    return data, show_instances(args.service, data)


def _instance_path(args: argparse.Namespace, suffix: str = "") -> str:
    return f"/api/v1/services/{quote(args.service)}/instances/{quote(args.id)}/{suffix}"


def instances_command(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {"weight": args.weight} if args.command == "weight" else None
    data = client.request("POST", _instance_path(args, f"{args.command}/"), body)
    return data, f"{data['id']}: {data['status']}, weight {data['weight']}\n{data['explanation']}"


def parse_meta(items: list[str] | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CtlError(f"--meta {item!r}: expected KEY=VALUE", 2)
        meta[key] = value
    return meta


def instances_bulk(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {
        "selector": {"tags": args.tags or [], "metadata": parse_meta(args.meta)},
        "action": args.action,
        "all": args.all,
    }
    if args.weight is not None:
        body["weight"] = args.weight
    path = f"/api/v1/services/{quote(args.service)}/instances/bulk/"
    data = client.request("POST", path, body)
    affected = data["affected"]
    text = f"{args.action}: {len(affected)} instance(s) changed"
    return data, "\n".join([text, *affected])


def instances_explain(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.request("GET", _instance_path(args, "explain/"))
    lines = [data["reason"], ""]
    lines += [f"{e['ts']}  {e['kind']:<9} {e['message']}" for e in data["timeline"]]
    return data, "\n".join(lines).rstrip()


def build_parser() -> argparse.ArgumentParser:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON"
    )
    parser = argparse.ArgumentParser(
        prog="meshctl",
        parents=[json_flag],
        description="The meshconsole REST API from the command line "
        "(MESH_URL, MESH_TOKEN from the environment).",
    )
    groups = parser.add_subparsers(
        dest="group",
        required=True,
        metavar=(
            "{services,instances,agents,tokens,intentions,routes,gateway,diff,apply,export,"
            "history,rollback}"
        ),
    )

    services = groups.add_parser("services", help="services in the registry")
    svc = services.add_subparsers(
        dest="command", required=True, metavar="{list,get,register,deregister}"
    )
    p = svc.add_parser("list", parents=[json_flag], help="list services")
    p.add_argument("--tag")
    p.add_argument("--health", choices=["passing", "warning", "critical", "empty"])
    p.add_argument("--search", help="substring of name or description")
    p.set_defaults(func=services_list)

    p = svc.add_parser("get", parents=[json_flag], help="one service with its health")
    p.add_argument("name")
    p.set_defaults(func=services_get)

    p = svc.add_parser("register", parents=[json_flag], help="create a service")
    p.add_argument("name")
    p.add_argument("--protocol", choices=["http", "tcp"], default="http")
    p.add_argument("--check-type", help="http, tcp, ttl or none")
    p.add_argument("--check-path", help="path of an http check, e.g. /health")
    p.add_argument("--interval", help="between checks, e.g. 5s")
    p.add_argument("--timeout", help="of one check, e.g. 2s")
    p.add_argument("--rise", type=int, help="passing checks before healthy")
    p.add_argument("--fall", type=int, help="failing checks before critical")
    p.add_argument("--expect-status", help='passing HTTP statuses, e.g. "200-399"')
    p.add_argument("--body", help="substring the HTTP check's response body must contain")
    p.add_argument(
        "--header", dest="headers", action="append", metavar="'NAME: VALUE'", help="repeatable"
    )
    p.add_argument("--tag", dest="tags", action="append", metavar="T", help="repeatable")
    p.add_argument("--description")
    p.set_defaults(func=services_register)

    p = svc.add_parser("deregister", parents=[json_flag], help="delete a service and its instances")
    p.add_argument("name")
    p.set_defaults(func=services_deregister)

    instances = groups.add_parser("instances", help="instances of a service")
    inst = instances.add_subparsers(
        dest="command",
        required=True,
        metavar="{list,maintenance,drain,enable,disable,weight,bulk,explain}",
    )
    p = inst.add_parser("list", parents=[json_flag], help="instances of SERVICE")
    p.add_argument("service")
    p.set_defaults(func=instances_list)
    helps = {
        "maintenance": "out of traffic until enabled",
        "drain": "no new traffic; maintenance after the service's drain timeout",
        "enable": "back in rotation (and checked)",
        "disable": "out of rotation and not checked",
    }
    for name, text in helps.items():
        p = inst.add_parser(name, parents=[json_flag], help=text)
        p.add_argument("service")
        p.add_argument("id")
        p.set_defaults(func=instances_command)
    p = inst.add_parser("weight", parents=[json_flag], help="set the weight of one instance")
    p.add_argument("service")
    p.add_argument("id")
    p.add_argument("weight", type=int)
    p.set_defaults(func=instances_command)
    p = inst.add_parser("bulk", parents=[json_flag], help="one action on matching instances")
    p.add_argument("service")
    p.add_argument("--tag", dest="tags", action="append", metavar="T", help="repeatable")
    p.add_argument("--meta", action="append", metavar="K=V", help="repeatable")
    p.add_argument("--all", action="store_true", help="every instance (no selector)")
    p.add_argument(
        "--action", required=True, choices=["maintenance", "drain", "enable", "disable", "weight"]
    )
    p.add_argument("--weight", type=int)
    p.set_defaults(func=instances_bulk)
    p = inst.add_parser("explain", parents=[json_flag], help="why an instance is in its state")
    p.add_argument("service")
    p.add_argument("id")
    p.set_defaults(func=instances_explain)
    agents.add_parsers(groups, json_flag)
    intentions.add_parsers(groups, json_flag)
    routes.add_parsers(groups, json_flag)
    gateway.add_parsers(groups, json_flag)
    mesh.add_parsers(groups, json_flag)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(os.environ.get("MESH_URL") or DEFAULT_URL, os.environ.get("MESH_TOKEN", ""))
        data, text = args.func(client, args)
    except CtlError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return exc.code
    except (KeyError, TypeError, AttributeError) as exc:
        print(
            f"meshctl: unexpected answer from the API ({exc!r}); is MESH_URL right?",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
