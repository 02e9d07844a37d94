"""meshctl agents / tokens: list agents, remove one, allow a re-enrollment;
list, create and revoke enrollment tokens (staff API tokens only)."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from meshconsole.meshctl.http import Client, CtlError, table


def _agent_id(client: Client, node: str) -> str:
    for agent in client.list_all("/api/v1/agents/"):
        if agent.get("node") == node:
            return str(agent["id"])
    raise CtlError(f"no agent on node {node!r}")


def agents_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all("/api/v1/agents/")
    rows = [
        [
            str(a.get("node")),
            str(a.get("version") or "-"),
            str(a.get("last_seen") or "-"),
            str(a.get("applied_revision") if a.get("applied_revision") is not None else "-"),
            str(a.get("nack_reason") or ""),
        ]
        for a in data
    ]
    return data, table(rows, ["NODE", "VERSION", "LAST SEEN", "APPLIED", "NACK"])


def agents_remove(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("DELETE", f"/api/v1/agents/{_agent_id(client, args.node)}/")
    return {"removed": args.node}, f"removed agent {args.node}; its instances are deregistered"


def agents_allow_reenroll(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    client.request("POST", f"/api/v1/agents/{_agent_id(client, args.node)}/allow-reenroll/")
    return {"allowed": args.node}, f"the next enrollment of {args.node} may replace its agent"


def tokens_list(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.list_all("/api/v1/agents/enrollment-tokens/")
    rows = [
        [
            t["prefix"],
            "active" if t["active"] else ("revoked" if t["revoked"] else "expired/used"),
            f"{t['uses']}/{t['max_uses']}" if t.get("max_uses") else str(t["uses"]),
            str(t.get("expires_at") or "never"),
            t.get("description") or "",
        ]
        for t in data
    ]
    return data, table(rows, ["PREFIX", "STATE", "USES", "EXPIRES", "DESCRIPTION"])


def tokens_create(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"description": args.description or ""}
    if args.ttl is not None:
        body["ttl"] = args.ttl
    if args.uses is not None:
        body["max_uses"] = args.uses
    if args.gateway:
        body["gateways"] = args.gateway
    data = client.request("POST", "/api/v1/agents/enrollment-tokens/", body)
    return data, str(data["token"])


def tokens_revoke(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    prefix = urllib.parse.quote(args.prefix, safe="")
    data = client.request("POST", f"/api/v1/agents/enrollment-tokens/{prefix}/revoke/")
    return data, f"revoked {data.get('revoked', 0)} token(s) with prefix {args.prefix}"


def add_parsers(groups: Any, json_flag: argparse.ArgumentParser) -> None:
    agents = groups.add_parser("agents", help="host agents")
    sub = agents.add_subparsers(
        dest="command", required=True, metavar="{list,remove,allow-reenroll}"
    )
    p = sub.add_parser("list", parents=[json_flag], help="agents with last seen and revision")
    p.set_defaults(func=agents_list)
    p = sub.add_parser("remove", parents=[json_flag], help="remove the agent of NODE")
    p.add_argument("node")
    p.set_defaults(func=agents_remove)
    p = sub.add_parser(
        "allow-reenroll", parents=[json_flag], help="let NODE's next enrollment replace its agent"
    )
    p.add_argument("node")
    p.set_defaults(func=agents_allow_reenroll)

    tokens = groups.add_parser("tokens", help="agent enrollment tokens")
    sub = tokens.add_subparsers(dest="command", required=True, metavar="{list,create,revoke}")
    p = sub.add_parser("list", parents=[json_flag], help="enrollment tokens (no secrets)")
    p.set_defaults(func=tokens_list)
    p = sub.add_parser("create", parents=[json_flag], help="a new token, printed once")
    p.add_argument("--ttl", help='lifetime, e.g. "24h"; "0s" = never expires')
    p.add_argument("--uses", type=int, help="how many enrollments it allows")
    p.add_argument("--description")
    p.add_argument(
        "--gateway", action="append", help="a gateway its agents may serve as (repeatable)"
    )
    p.set_defaults(func=tokens_create)
    p = sub.add_parser("revoke", parents=[json_flag], help="revoke the token with PREFIX")
    p.add_argument("prefix")
    p.set_defaults(func=tokens_revoke)
