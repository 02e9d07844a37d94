"""The answer of an apply or a diff: the plan (added, changed with a field diff,
deleted) and the errors, each where it is (document index, kind/name, field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshcode.kinds import Document


@dataclass(frozen=True)
class DocumentError:
    """One error, where it is: document INDEX (0-based, in the order sent),
    its `kind/name`, the FIELD path ("retries.backoff_base", "" = the document)."""

    index: int | None
    document: str
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "document": self.document,
            "field": self.field,
            "message": self.message,
        }


class InvalidDocuments(Exception):
    def __init__(self, errors: list[DocumentError]) -> None:
        super().__init__(f"{len(errors)} error(s) in the documents")
        self.errors = errors


class UnknownVersion(Exception):
    pass


@dataclass
class Plan:
    """What an apply changes: added documents, changed ones with their field
    diff (and whether the resource drifted from what YAML last applied),
    deleted ones (only with prune)."""

    added: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def summary(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
        }


@dataclass
class ApplyResult:
    plan: Plan
    dry_run: bool
    version: int | None = None
    revision: int | None = None
    what_if: dict[str, Any] | None = None  # dry runs: monitoring.whatif per service moved

    def as_dict(self) -> dict[str, Any]:
        out = {
            "version": self.version,
            "revision": self.revision,
            "dry_run": self.dry_run,
            "summary": self.plan.summary(),
            "diff": self.plan.as_dict(),
        }
        if self.what_if is not None:
            out["what_if"] = self.what_if
        return out


def field_errors(detail: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF error details as (field path, message) pairs."""
    if isinstance(detail, dict):
        out: list[tuple[str, str]] = []
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "detail") else str(key)
            path = f"{prefix}.{name}" if prefix and name else prefix or name
            out += field_errors(value, path)
        return out
    if isinstance(detail, list):
        if all(not isinstance(v, dict | list) for v in detail):
            return [(prefix, "; ".join(str(v) for v in detail))] if detail else []
        return [pair for value in detail for pair in field_errors(value, prefix)]
    return [(prefix, str(detail))]


def _leaves(document: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(document, dict) and document:
        out: dict[str, Any] = {}
        for key, value in document.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: document}


def field_diff(before: Document, after: Document) -> list[dict[str, Any]]:
    """[{"field": "check.interval", "from": "5s", "to": "10s"}, ...]; lists are values."""
    old, new = _leaves(before), _leaves(after)
    return [
        {"field": key, "from": old.get(key), "to": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
