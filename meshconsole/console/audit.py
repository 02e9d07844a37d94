"""The audit page: who changed what and when, each change as a field diff,
filtered by person, object and time and paged; the mesh versions (meshcode)
with their author, message and a diff of what each one changed."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from meshcode.models import MeshVersion
from meshconsole.audit import audit_entries
from meshconsole.console.views import page_of

VERSIONS_SHOWN = 20
FILTERS = ("actor", "object_type", "object_id", "since", "until")


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None  # JSON text; None: the field was not there
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        return "removed" if self.after is None else "changed"


def _flat(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys; anything else as its JSON text."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(value)": json.dumps(value, sort_keys=True)}


def audit_diff(before: Any, after: Any) -> list[FieldChange]:
    """The fields an entry changed, added or removed, in field order."""
    old = _flat(before) if before is not None else {}
    new = _flat(after) if after is not None else {}
    return [
        FieldChange(key, old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


@require_GET
@login_required
def audit_page(request: HttpRequest) -> HttpResponse:
    found = audit_entries(request.GET)
    # A filter that does not parse (a bad date) is shown as an error, not a 500.
    errors = {k: " ".join(v) for k, v in found.errors.items()} if not found.is_valid() else {}
    queryset = found.qs if not errors else found.queryset.none()
    page = page_of(request, queryset)
    rows = [{"entry": e, "changes": audit_diff(e.before, e.after)} for e in page.object_list]
    filters = {k: request.GET.get(k, "") for k in FILTERS}
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {
        "rows": rows,
        "page": page,
        "filters": filters,
        "errors": errors,
        "export_query": query,
        "versions": MeshVersion.objects.order_by("-number")[:VERSIONS_SHOWN],
    }
    return render(request, "console/audit.html", context)


def _text(documents: Any) -> list[str]:
    return json.dumps(documents, indent=2, sort_keys=True).splitlines()


@require_GET
@login_required
def mesh_version_page(request: HttpRequest, number: int) -> HttpResponse:
    """What version NUMBER changed: what YAML managed before it against after it."""
    version = MeshVersion.objects.filter(number=number).first()
    if version is None:
        raise Http404(f"no mesh version {number}")
    previous = MeshVersion.objects.filter(number__lt=number).order_by("-number").first()
    diff = list(
        difflib.unified_diff(
            _text(previous.managed if previous else []),
            _text(version.managed),
            fromfile=f"version {previous.number}" if previous else "(nothing managed)",
            tofile=f"version {number}",
            lineterm="",
        )
    )
    context = {"version": version, "previous": previous, "diff": diff}
    return render(request, "console/mesh_version.html", context)
