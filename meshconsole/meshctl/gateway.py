"""meshctl gateway: gateways, their route tables, consumers, keys, JWT
providers (docs/gateway.md). A table or a provider is read from a YAML or JSON
file; a new key is printed once (the control plane keeps only its hash)."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from agents.runtime.yamlfile import load_yaml
from meshconsole.meshctl.http import Client, CtlError, jsonable, table

BASE = "/api/v1/gateway/"


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _document(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return jsonable(load_yaml(text), path)  # a key given twice is refused
    except OSError as exc:
        raise CtlError(f"{path}: {exc.strerror}", code=2) from exc
    except ValueError as exc:  # UnicodeDecodeError too
        raise CtlError(f"{path}: not YAML or JSON: {exc}", code=2) from exc


def gateways_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all(BASE)
    rows = [
        [g["name"], str(g["version"]), str(g["routes"]), ",".join(g["agents"]) or "-"]
        for g in data
    ]
    return data, table(rows, ["GATEWAY", "VERSION", "ROUTES", "AGENTS"])


def gateways_create(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {"name": args.name, "description": args.description or ""}
    data = client.request("POST", BASE, body)
    return data, f"gateway {data['name']} created"


def gateways_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"{BASE}{_q(args.name)}/")
    return {"removed": args.name}, f"removed gateway {args.name}"


def _path_text(path: dict[str, str]) -> str:
    kind, value = next(iter(path.items()))
    return {"exact": value, "prefix": f"{value}*", "regex": f"~{value}"}.get(kind, value)


def routes_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.request("GET", f"{BASE}{_q(args.gateway)}/routes/")
    rows = [
        [
            r["name"],
            ",".join(r["hosts"]) or "*",
            _path_text(r["path"]),
            ",".join(r["methods"]) or "*",
            r["service"] + (f"/{r['subset']}" if r.get("subset") else ""),
            r["auth"]["type"],
            str(len(r["rate_limits"])),
        ]
        for r in data["routes"]
    ]
    text = table(rows, ["ROUTE", "HOSTS", "PATH", "METHODS", "SERVICE", "AUTH", "LIMITS"])
    return data, f"{text}\ngateway {data['gateway']} version {data['version']}"


def routes_set(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    """PUT the whole table from a file: a list of routes, or {version, routes}."""
    doc = _document(args.file)
    body: dict[str, Any] = {"routes": doc} if isinstance(doc, list) else doc
    if not isinstance(body, dict):
        raise CtlError(f"{args.file}: a list of routes or {{version, routes}}", code=2)
    if args.version is not None:
        body = {**body, "version": args.version}
    data = client.request("PUT", f"{BASE}{_q(args.gateway)}/routes/", body)
    count, version = len(data["routes"]), data["version"]
    return data, f"gateway {data['gateway']}: {count} routes, version {version}"


def routes_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"{BASE}{_q(args.gateway)}/routes/{_q(args.route)}/")
    return {"removed": args.route}, f"removed route {args.route} of {args.gateway}"


def consumers_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all(f"{BASE}consumers/")
    rows = [
        [
            c["name"],
            ",".join(k["prefix"] + "…" for k in c["keys"]) or "-",
            ",".join(c["jwt_subjects"]) or "-",
            ",".join(c["tags"]),
            c["description"],
        ]
        for c in data
    ]
    return data, table(rows, ["CONSUMER", "KEYS", "JWT SUBJECTS", "TAGS", "DESCRIPTION"])


def consumers_add(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {
        "name": args.name,
        "jwt_subjects": args.subject or [],
        "tags": args.tag or [],
        "description": args.description or "",
    }
    data = client.request("POST", f"{BASE}consumers/", body)
    return data, f"consumer {data['name']} created"


def consumers_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"{BASE}consumers/{_q(args.name)}/")
    return {"removed": args.name}, f"removed consumer {args.name}"


def keys_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all(f"{BASE}consumers/{_q(args.consumer)}/keys/")
    rows = [
        [k["prefix"] + "…", k["created_at"], k.get("last_used_at") or "-", k["description"]]
        for k in data
    ]
    return data, table(rows, ["KEY", "CREATED", "LAST USED", "DESCRIPTION"])


def keys_add(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {"description": args.description or ""}
    data = client.request("POST", f"{BASE}consumers/{_q(args.consumer)}/keys/", body)
    return data, (
        f"{data['key']}\n(key {data['prefix']}… of consumer {data['consumer']}: "
        "shown once, it cannot be read back)"
    )


def keys_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    prefix = args.prefix.rstrip("…")
    client.request("DELETE", f"{BASE}consumers/{_q(args.consumer)}/keys/{_q(prefix)}/")
    return {"removed": prefix}, f"revoked key {prefix}… of {args.consumer}"


def providers_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all(f"{BASE}jwt-providers/")
    rows = [
        [
            p["name"],
            ",".join(p["algorithms"]),
            p["issuer"],
            p["audience"],
            "secret" if p["secret_set"] else (p.get("jwks_url") or "jwks"),
        ]
        for p in data
    ]
    return data, table(rows, ["PROVIDER", "ALGORITHMS", "ISSUER", "AUDIENCE", "KEYS"])


def providers_set(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    """Create or replace provider NAME from a file (a PUT without `secret` keeps it)."""
    doc = _document(args.file)
    if not isinstance(doc, dict):
        raise CtlError(f"{args.file}: a provider is a mapping", code=2)
    body = {**doc, "name": args.name}
    path = f"{BASE}jwt-providers/{_q(args.name)}/"
    try:
        data = client.request("PUT", path, body)
        verb = "replaced"
    except CtlError as exc:
        if not str(exc).startswith("404"):
            raise
        data = client.request("POST", f"{BASE}jwt-providers/", body)
        verb = "created"
    return data, f"JWT provider {data['name']} {verb}"


def providers_rm(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"{BASE}jwt-providers/{_q(args.name)}/")
    return {"removed": args.name}, f"removed JWT provider {args.name}"


def _group(sub: Any, name: str, text: str) -> Any:
    parser = sub.add_parser(name, help=text)
    return parser.add_subparsers(dest="action", required=True)


def add_parsers(groups: Any, json_flag: argparse.ArgumentParser) -> None:
    gateway = groups.add_parser("gateway", help="gateways, routes, consumers, keys, providers")
    sub = gateway.add_subparsers(
        dest="command", required=True, metavar="{list,create,rm,routes,consumers,keys,providers}"
    )
    p = sub.add_parser("list", parents=[json_flag], help="gateways")
    p.set_defaults(func=gateways_list)
    p = sub.add_parser("create", parents=[json_flag], help="a new gateway NAME")
    p.add_argument("name")
    p.add_argument("--description")
    p.set_defaults(func=gateways_create)
    p = sub.add_parser("rm", parents=[json_flag], help="remove gateway NAME and its routes")
    p.add_argument("name")
    p.set_defaults(func=gateways_rm)

    routes = _group(sub, "routes", "a gateway's ordered route table")
    p = routes.add_parser("list", parents=[json_flag], help="the routes of GATEWAY")
    p.add_argument("gateway")
    p.set_defaults(func=routes_list)
    p = routes.add_parser("set", parents=[json_flag], help="replace GATEWAY's table from -f FILE")
    p.add_argument("gateway")
    p.add_argument("-f", "--file", required=True, help="YAML/JSON: a list of routes")
    p.add_argument("--version", type=int, help="the version read (409 if it moved)")
    p.set_defaults(func=routes_set)
    p = routes.add_parser("rm", parents=[json_flag], help="remove ROUTE of GATEWAY")
    p.add_argument("gateway")
    p.add_argument("route")
    p.set_defaults(func=routes_rm)

    consumers = _group(sub, "consumers", "API consumers")
    p = consumers.add_parser("list", parents=[json_flag], help="consumers (key prefixes only)")
    p.set_defaults(func=consumers_list)
    p = consumers.add_parser("add", parents=[json_flag], help="a new consumer NAME")
    p.add_argument("name")
    p.add_argument("--subject", action="append", help="a JWT subject (repeatable)")
    p.add_argument("--tag", action="append", help="a tag (repeatable)")
    p.add_argument("--description")
    p.set_defaults(func=consumers_add)
    p = consumers.add_parser("rm", parents=[json_flag], help="remove consumer NAME")
    p.add_argument("name")
    p.set_defaults(func=consumers_rm)

    keys = _group(sub, "keys", "consumers' API keys")
    p = keys.add_parser("list", parents=[json_flag], help="keys of CONSUMER (prefixes)")
    p.add_argument("consumer")
    p.set_defaults(func=keys_list)
    p = keys.add_parser("add", parents=[json_flag], help="a new key for CONSUMER, shown once")
    p.add_argument("consumer")
    p.add_argument("--description")
    p.set_defaults(func=keys_add)
    p = keys.add_parser("rm", parents=[json_flag], help="revoke key PREFIX of CONSUMER")
    p.add_argument("consumer")
    p.add_argument("prefix")
    p.set_defaults(func=keys_rm)

    providers = _group(sub, "providers", "JWT providers")
    p = providers.add_parser("list", parents=[json_flag], help="providers (secrets never shown)")
    p.set_defaults(func=providers_list)
    p = providers.add_parser("set", parents=[json_flag], help="create/replace NAME from -f FILE")
    p.add_argument("name")
    p.add_argument("-f", "--file", required=True, help="YAML/JSON: algorithms, issuer, ...")
    p.set_defaults(func=providers_set)
    p = providers.add_parser("rm", parents=[json_flag], help="remove provider NAME")
    p.add_argument("name")
    p.set_defaults(func=providers_rm)
