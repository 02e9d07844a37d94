"""The API's one parser (REST_FRAMEWORK DEFAULT_PARSER_CLASSES). Its own module:
DRF loads it while its own modules import, so it must not import meshconsole.api."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class MeshJSONParser(JSONParser):
    """JSON, minus what no database can store: an unpaired surrogate ("\\ud8ad")
    is valid JSON but not UTF-8, and a dict key or free-form value holding one
    was a 500 when written (found by the schemathesis run). Fields of type
    CharField already refuse them; this covers keys and free-form JSON."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise exceptions.ParseError(
                f"JSON parse error - unpaired surrogate at position {exc.start}"
            ) from None
        return data
