"""What every kind of mesh document implements (meshcode.kinds lists them)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from journal.records import Actor
from registry.models import SERVICE_NAME_RE

Document = dict[str, Any]
ENVELOPE = ("kind", "name")
NAME = re.compile(SERVICE_NAME_RE)


def unknown_fields(data: dict[str, Any], allowed: set[str]) -> dict[str, list[str]]:
    return {key: ["unknown field"] for key in sorted(set(data) - allowed)}


class Kind:
    """The interface every kind implements (a plain base class: few methods)."""

    name: ClassVar[str]

    def documents(self) -> dict[str, Document]:
        """The current mesh as documents of this kind, by name (export order)."""
        raise NotImplementedError

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        """(normalized document, validated data) of BODY (the document without
        `kind`); serializers.ValidationError with field errors otherwise. Runs
        inside the apply's transaction, after the earlier kinds are written."""
        raise NotImplementedError

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        raise NotImplementedError

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        raise NotImplementedError

    def depends_on(self, name: str) -> tuple[str, str] | None:
        """The (kind, name) this resource cannot exist without, if any."""
        return None

    def accepts(self, name: str) -> bool:
        """Whether NAME can name a document of this kind (a DNS label by default)."""
        return bool(NAME.fullmatch(name))


