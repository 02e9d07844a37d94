"""The audit trail over HTTP: `/api/v1/audit/` (a page of entries, filtered)
and `/api/v1/audit/export/?format=csv|json` (every matching entry, streamed).

Readable by every role: a viewer reads everything, the audit trail included
(it holds who changed what, never a secret: tokens are audited by prefix)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import django_filters as filters
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from journal.models import AuditEntry
from meshconsole.roles import READ

EXPORT_FIELDS = ["id", "ts", "actor", "action", "object_type", "object_id", "before", "after"]
EXPORT_CHUNK = 500


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = EXPORT_FIELDS


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time as UTC (as monitoring's events filter compares it): PostgreSQL
    refuses offsets past ±15:59 that Python accepts, and a time that leaves the calendar
    once in UTC is a form error (a 400, or the page's filter error), never a 500."""

    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("out of range once in UTC", code="invalid") from None


class UTCIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class AuditFilter(filters.FilterSet):
    """person (`actor`), object (`object_type`, `object_id`) and time (`since`, `until`)."""

    actor = filters.CharFilter(field_name="actor")
    object_type = filters.CharFilter(field_name="object_type")
    object_id = filters.CharFilter(field_name="object_id")
    since = UTCIsoDateTimeFilter(field_name="ts", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="ts", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []


def audit_entries(params: Any) -> AuditFilter:
    """The filter over every entry, newest first (the API, the export and the page)."""
    return AuditFilter(params, queryset=AuditEntry.objects.order_by("-ts", "-id"))


class AuditListView(generics.ListAPIView):
    roles = READ
    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilter
    queryset = AuditEntry.objects.order_by("-ts", "-id")


class CSVRenderer(BaseRenderer):
    # Only so that content negotiation accepts ?format=csv; the view streams.
    media_type = "text/csv"
    format = "csv"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b""


class _Echo:
    def write(self, value: str) -> str:
        return value


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "ts": entry.ts.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
    }


def _read(chunk: QuerySet[AuditEntry]) -> list[AuditEntry]:
    return list(chunk)


async def _rows(queryset: QuerySet[AuditEntry]) -> AsyncIterator[dict[str, Any]]:
    # Keyset pages by id (newest first), each read in a thread of its own: the
    # ASGI server sends a chunk while the next is read, and no connection or
    # cursor stays open across the whole export.
    last: int | None = None
    while True:
        page = queryset.order_by("-id") if last is None else queryset.filter(id__lt=last)
        entries = await sync_to_async(_read)(page.order_by("-id")[:EXPORT_CHUNK])
        for entry in entries:
            yield _row(entry)
        if len(entries) < EXPORT_CHUNK:
            return
        last = entries[-1].pk


async def _csv(queryset: QuerySet[AuditEntry]) -> AsyncIterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    async for row in _rows(queryset):
        for key in ("before", "after"):
            row[key] = "" if row[key] is None else json.dumps(row[key], sort_keys=True)
        yield writer.writerow([row[f] for f in EXPORT_FIELDS])


async def _json(queryset: QuerySet[AuditEntry]) -> AsyncIterator[str]:
    yield "["
    n = 0
    async for row in _rows(queryset):
        yield ("," if n else "") + json.dumps(row, sort_keys=True)
        n += 1
    yield "]"


class AuditExportView(APIView):
    """Every entry matching the filters, streamed as CSV or a JSON array."""

    roles = READ
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["csv", "json"])],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): AuditEntrySerializer(many=True),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        found = audit_entries(request.query_params)
        if not found.is_valid():
            raise serializers.ValidationError(found.errors)
        as_csv = request.query_params.get("format", "json") == "csv"
        body = _csv(found.qs) if as_csv else _json(found.qs)
        response = StreamingHttpResponse(
            body, content_type="text/csv; charset=utf-8" if as_csv else "application/json"
        )
        name = "audit.csv" if as_csv else "audit.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
