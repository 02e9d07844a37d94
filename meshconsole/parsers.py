"""The API's one parser (REST_FRAMEWORK DEFAULT_PARSER_CLASSES). Its own module:
DRF loads it while its own modules import, so it must not import meshconsole.api."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

# Levels of objects and arrays a body may nest: the deepest document of the API
# (meshcode's) is about ten. 100,000 overflowed the decoder's recursion (a 500).
MAX_JSON_DEPTH = 64


def _too_deep(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(
            value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class MeshJSONParser(JSONParser):
    """JSON, minus what no database can store: an unpaired surrogate ("\\ud8ad")
    is valid JSON but not UTF-8, and a dict key or free-form value holding one
    was a 500 when written (found by the schemathesis run). Fields of type
    CharField already refuse them; this covers keys and free-form JSON. And
    minus nesting past MAX_JSON_DEPTH."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        too_deep = exceptions.ParseError(
            f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
        )
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if _too_deep(data):
            raise too_deep
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise exceptions.ParseError(
                f"JSON parse error - unpaired surrogate at position {exc.start}"
            ) from None
        return data
