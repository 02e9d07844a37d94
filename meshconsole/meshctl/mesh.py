"""meshctl diff / apply / export / history / rollback: the mesh as code
(docs/mesh-as-code.md). Standard library and PyYAML only.

The YAML is read here with its node marks, so the server's errors (document
index, field path) come back as `file:line: field: message`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.runtime.yamlfile import StrictLoader
from meshconsole.meshctl.http import Client, CtlError, jsonable, table

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Source:
    """One document as read: where it came from, its node tree, its data."""

    file: str
    node: yaml.Node
    data: Any

    def line_of(self, field: str) -> int:
        """The 1-based line of FIELD ("retries.backoff_base", "failover.targets.0")
        in this document; the nearest enclosing node's line when it is absent."""
        node = self.node
        line = node.start_mark.line + 1
        for part in [p for p in field.split(".") if p]:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if k.value == part), None)
                if match is None:
                    break
                line = match[0].start_mark.line + 1
                node = match[1]
            elif isinstance(node, yaml.SequenceNode) and part.isdigit():
                if int(part) >= len(node.value):
                    break
                node = node.value[int(part)]
                line = node.start_mark.line + 1
            else:
                break
        return line


def _files(path: str) -> list[Path]:
    target = Path(path)
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
    if not target.exists():
        raise CtlError(f"{path}: no such file or directory", 2)
    return [target]


def load_text(text: str, file: str) -> list[Source]:
    sources: list[Source] = []
    loader = StrictLoader(text)  # a key given twice is refused, as in agent.yaml
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:
                continue  # an empty document (a trailing ---)
            where = f"{file}:{node.start_mark.line + 1}"
            sources.append(Source(file, node, jsonable(data, where)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        raise CtlError(f"{file}:{line} {exc.problem or exc}", 2) from None
    except yaml.YAMLError as exc:
        raise CtlError(f"{file}: {exc}", 2) from None
    finally:
        loader.dispose()
    return sources


def load_sources(paths: list[str]) -> list[Source]:
    """Every document of every file (directories: their *.yaml/*.yml, sorted), in order."""
    sources: list[Source] = []
    for path in paths:
        if path == "-":
            sources += load_text(sys.stdin.read(), "<stdin>")
            continue
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CtlError(f"{file}: {exc}", 2) from None
            sources += load_text(text, str(file))
    return sources


def located_errors(sources: list[Source], body: Any) -> list[str] | None:
    """The server's {"errors": [{index, document, field, message}]} as
    `file:line: field: message (Kind/name)` lines, or None for another answer."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return None
    lines = []
    for error in body["errors"]:
        index, field = error.get("index"), str(error.get("field") or "")
        where = "<mesh>"
        if isinstance(index, int) and 0 <= index < len(sources):
            source = sources[index]
            where = f"{source.file}:{source.line_of(field)}"
        label = f" ({error['document']})" if error.get("document") else ""
        lines.append(f"{where}: {field or 'document'}: {error.get('message')}{label}")
    return lines


def _send(client: Client, path: str, sources: list[Source], body: dict[str, Any]) -> Any:
    try:
        return client.request("POST", path, {"documents": [s.data for s in sources], **body})
    except CtlError as exc:
        lines = located_errors(sources, exc.body)
        if lines is None:
            raise
        count = len(lines)
        raise CtlError("\n".join([f"{count} error(s); nothing was changed", *lines]), 1) from None


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def show_diff(answer: dict[str, Any]) -> str:
    diff = answer["diff"]
    lines = [
        f"+ {d['kind']}/{d['name']}"
        + ("  (drift: deleted outside YAML since its last apply)" if d.get("drift") else "")
        for d in diff["added"]
    ]
    for change in diff["changed"]:
        drift = "  (drift: changed outside YAML since its last apply)" if change["drift"] else ""
        lines.append(f"~ {change['kind']}/{change['name']}{drift}")
        lines += [
            f"    {f['field']}: {_value(f['from'])} -> {_value(f['to'])}" for f in change["fields"]
        ]
    lines += [f"- {d['kind']}/{d['name']}" for d in diff["deleted"]]
    summary = answer["summary"]
    lines.append(
        f"{summary['added']} to add, {summary['changed']} to change, "
        f"{summary['deleted']} to delete, {summary['unchanged']} unchanged"
    )
    return "\n".join(lines)


def show_what_if(what_if: dict[str, Any]) -> str:
    """The dry run's what-if: per service moved, rps per instance now -> after."""
    lines = []
    for name, p in sorted(what_if.items()):
        before = {i["id"]: i["rps"] for i in p["before"]["instances"]}
        served = p["after"]["served_by"]
        lines.append(
            f"what-if {name}: {p['before']['rps']:g} rps over the last "
            f"{p['window_seconds']} s" + (f", served by {served}" if served != name else "")
            + (", panic" if p["after"]["panic"] else "")
        )
        lines += [
            f"    {i['address']}:{i['port']}  {before.get(i['id'], 0):g} -> {i['rps']:g} rps"
            for i in p["after"]["instances"]
        ]
        lines += [f"    ! {w}" for w in p["warnings"]]
    return "\n".join(lines)


def mesh_diff(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    sources = load_sources(args.files)
    answer = _send(client, "/api/v1/mesh/diff/", sources, {"prune": args.prune})
    return answer, show_diff(answer)


def mesh_apply(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    sources = load_sources(args.files)
    dry_run = args.dry_run == "server"
    body = {"prune": args.prune, "dry_run": dry_run, "message": args.message or ""}
    answer = _send(client, "/api/v1/mesh/apply/", sources, body)
    text = show_diff(answer)
    if dry_run:
        what_if = show_what_if(answer.get("what_if") or {})
        return answer, f"{text}\n" + (f"{what_if}\n" if what_if else "") + (
            "(dry run: nothing was written)")
    if answer["version"] is None:
        return answer, f"{text}\nno changes"
    return answer, f"{text}\napplied as mesh version {answer['version']}" + (
        f" (revision {answer['revision']})" if answer["revision"] is not None else ""
    )


def export_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(
        documents, sort_keys=False, explicit_start=True, allow_unicode=True, width=100
    )


def mesh_export(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    documents = client.request("GET", "/api/v1/mesh/export/")["documents"]
    text = export_yaml(documents)
    if args.output and args.output != "-":
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CtlError(f"{args.output}: {exc}", 2) from None
        return documents, f"wrote {len(documents)} document(s) to {args.output}"
    return documents, text.rstrip("\n")


def mesh_history(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    versions = client.request("GET", "/api/v1/mesh/versions/")
    if not versions:
        return versions, "no mesh versions yet"
    rows = []
    for v in versions:
        s = v.get("summary") or {}
        message = v.get("message") or ""
        rows.append(
            [
                str(v["number"]),
                str(v.get("created_at") or ""),
                str(v.get("author") or ""),
                str(v.get("revision") if v.get("revision") is not None else "-"),
                f"+{s.get('added', 0)} ~{s.get('changed', 0)} -{s.get('deleted', 0)}",
                message,
            ]
        )
    return versions, table(rows, ["VERSION", "CREATED", "AUTHOR", "REVISION", "CHANGES", "MESSAGE"])


def mesh_rollback(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    body = {"version": args.version, "dry_run": args.dry_run == "server"}
    answer = client.request("POST", "/api/v1/mesh/rollback/", body)
    text = show_diff(answer)
    if answer["dry_run"]:
        return answer, f"{text}\n(dry run: nothing was written)"
    return answer, f"{text}\nrolled back to version {args.version} as version {answer['version']}"


def add_parsers(groups: Any, json_flag: argparse.ArgumentParser) -> None:
    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-f",
            "--filename",
            dest="files",
            action="append",
            required=True,
            metavar="PATH",
            help="a YAML file, a directory of them, or - (stdin); repeatable",
        )
        p.add_argument(
            "--prune", action="store_true", help="delete managed resources no document names"
        )

    def dry_run(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dry-run",
            nargs="?",
            const="server",
            default="none",
            choices=["none", "server"],
            help="server: validate and diff on the server without writing",
        )

    p = groups.add_parser("diff", parents=[json_flag], help="what an apply would change")
    files(p)
    p.set_defaults(func=mesh_diff)
    p = groups.add_parser(
        "apply", parents=[json_flag], help="make the mesh what the YAML says (one revision)"
    )
    files(p)
    dry_run(p)
    p.add_argument("-m", "--message", help="why (stored with the mesh version)")
    p.set_defaults(func=mesh_apply)
    p = groups.add_parser("export", parents=[json_flag], help="the current mesh as YAML")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=mesh_export)
    p = groups.add_parser("history", parents=[json_flag], help="the mesh versions, newest first")
    p.set_defaults(func=mesh_history)
    p = groups.add_parser(
        "rollback", parents=[json_flag], help="restore what version N managed, as a new version"
    )
    p.add_argument("version", type=int)
    dry_run(p)
    p.set_defaults(func=mesh_rollback)
