"""API plumbing shared by the apps: error shape, conflicts, strict input, duration fields."""

from __future__ import annotations

import logging
import queue
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from agents.runtime.durations import format_duration_ms, parse_duration_ms

log = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class DatabaseBusy(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is busy; retry shortly."
    default_code = "busy"


# deadlock_detected, serialization_failure, lock_not_available (PostgreSQL's SQLSTATEs).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def database_busy(exc: BaseException) -> DatabaseBusy | None:
    """A 503 for the database being busy rather than broken: no pooled PostgreSQL
    connection came free in MESH_DB_POOL_TIMEOUT, or SQLite's write lock did not
    within its busy timeout. Under a fleet's load that is back-pressure (the
    agents retry with backoff), not a server error. So is a transaction PostgreSQL
    aborted to break a deadlock or a serialization conflict: it changed nothing, and
    the same request again succeeds."""
    if not isinstance(exc, OperationalError):
        return None
    cause = exc.__cause__
    pool_timeout = type(cause).__name__ == "PoolTimeout"  # psycopg_pool, when installed
    retryable = getattr(cause, "sqlstate", None) in TRANSIENT_SQLSTATES
    if pool_timeout or retryable or "database is locked" in str(exc):
        log.warning("database busy: %s", exc)
        return DatabaseBusy()
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: IntegrityError -> 409, Django ValidationError -> 400,
    a busy database -> 503 with Retry-After, a body over DATA_UPLOAD_MAX_MEMORY_SIZE -> 413
    (Django's own answer to it is an HTML 400 that says nothing)."""
    busy = database_busy(exc)
    if busy is not None:
        response = drf_exception_handler(busy, context)
        if response is not None:
            response["Retry-After"] = "1"
        return response
    if isinstance(exc, IntegrityError):
        log.info("conflict: %s", exc)
        exc = Conflict()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's handler404: DRF's JSON shape under /api/ (no route matched the path),
    the console's styled page (templates/404.html) elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception or Http404())


class MeshPagination(PageNumberPagination):
    """Every list of the API: {"count", "next", "previous", "results"}, 100 rows a
    page by default, ?page=N, ?page_size= up to 1000 (a larger value is clamped)."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000



class NumberOrTextRegexField(serializers.RegexField):
    """A text field a number may also fill (an HTTP status: `expect_status: 200`)."""


class StrictFieldsMixin:
    """Unknown keys are errors, not silently dropped: a typo must not pass as a
    change. Read-only fields count as known (a document read, edited and sent
    back is accepted); DRF ignores their values."""

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
            # DRF's CharField takes a number as its string ({"name": 5} made service "5",
            # an intention source 1e400 became "inf"): a text field takes text, and so
            # does each item of a list or dict of text (host 5, tag 5, a header 1.5).
            wrong = {
                name: error
                for name, field in self.fields.items()
                if not field.read_only and name in data
                and (error := _not_text(field, data[name])) is not None
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)  # type: ignore[misc]


def _not_text(field: serializers.Field, value: Any) -> Any:
    """The error of a VALUE that is not text where FIELD (a CharField, or a list or dict
    of them) takes text, in DRF's shape (by index or key for an item); None if none.
    A null, or the wrong container, is left to the field's own checks."""
    if value is None:
        return None
    if isinstance(field, serializers.CharField):
        if isinstance(field, NumberOrTextRegexField) or isinstance(value, str):
            return None
        return [f"expected a string, got {_json_type(value)}"]
    items: dict[Any, Any] = {}
    child: serializers.Field | None = None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        items, child = dict(enumerate(value)), field.child
    elif isinstance(field, serializers.DictField) and isinstance(value, dict):
        items, child = value, field.child
    if child is None:
        return None
    errors = {
        key: error for key, item in items.items()
        if (error := _not_text(child, item)) is not None
    }
    return errors or None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


S = TypeVar("S", bound=serializers.Serializer)


class SerializerPool(Generic[S]):
    """Validation through serializers built once and reused, one request at a time each.

    A DRF serializer deep-copies every declared field, nested ones included, into
    each new instance: ~1 ms of the agent report's ~1.2 ms validation, on every
    report of a fleet. `validate` is `Serializer(data=...).is_valid(raise_exception=True)`
    and `.validated_data` (the same errors: run_validation raises them), with an
    instance taken from the pool (a new one when all are in use) and given back."""

    def __init__(self, serializer: type[S]) -> None:
        self.serializer = serializer
        self._free: queue.SimpleQueue[S] = queue.SimpleQueue()

    def validate(self, data: Any) -> Any:
        try:
            instance = self._free.get_nowait()
        except queue.Empty:
            instance = self.serializer()
        try:
            return instance.run_validation(data)
        finally:
            self._free.put(instance)


DURATION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$",
    "example": "5s",
    "description": 'a duration: "500ms", "5s", "2m", "1h" (no unit: seconds)',
}


@extend_schema_field(DURATION_SCHEMA)
class DurationField(serializers.Field):
    """A duration in the API ("500ms", "5s", "2m"), stored as milliseconds."""

    default_error_messages = {"invalid": "{reason}"}

    def __init__(self, *, min_ms: int = 0, max_ms: int | None = None, **kwargs: Any) -> None:
        self.min_ms = min_ms
        self.max_ms = max_ms
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> int:
        try:
            ms = parse_duration_ms(data)
        except ValueError as exc:
            self.fail("invalid", reason=str(exc))
        if ms < self.min_ms:
            self.fail("invalid", reason=f"must be at least {format_duration_ms(self.min_ms)}")
        if self.max_ms is not None and ms > self.max_ms:
            self.fail("invalid", reason=f"must be at most {format_duration_ms(self.max_ms)}")
        return ms

    def to_representation(self, value: int) -> str:
        return format_duration_ms(int(value))


class StringListField(serializers.ListField):
    child = serializers.CharField(max_length=100)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)
