"""GET topology/history/ (the slider's frames and change marks) and
topology/history/at/?at=ISO (one frame): monitoring.timetravel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.roles import READ
from monitoring.timetravel import frame_at, timeline


def _time(request: Request, name: str, default: datetime) -> datetime:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError({name: "an ISO 8601 time, e.g. 2026-12-02T05:00:00Z"}) from None


class TopologyHistoryView(APIView):
    """The minutes that have a frame and the configuration changes between
    ?since= and ?until= (default: the retention, up to now)."""

    roles = READ

    @extend_schema(
        parameters=[OpenApiParameter("since", str), OpenApiParameter("until", str)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        until = _time(request, "until", now)
        since = _time(request, "since",
                      now - timedelta(seconds=settings.MESH_TIMETRAVEL_RETENTION))
        if since > until:
            raise ValidationError({"since": "must be before until"})
        return Response(timeline(since, until))


class TopologyAtView(APIView):
    """The topology of the last recorded minute at or before ?at=, with the
    changes of that minute."""

    roles = READ

    @extend_schema(parameters=[OpenApiParameter("at", str, required=True)],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        if not request.query_params.get("at"):
            raise ValidationError({"at": "required: an ISO 8601 time"})
        frame = frame_at(_time(request, "at", timezone.now()))
        if frame is None:
            raise NotFound("no topology recorded at or before that time")
        return Response(frame)
