"""The `Intentions` kind: the access rules into one destination, as one document
(Consul's `service-intentions` config entry has the same shape: one entry per
destination with its list of sources).

```yaml
kind: Intentions
name: payments          # the destination service, or "*" (quote it in YAML)
sources:
  - source: orders
    action: allow
    http: {methods: [POST], path_prefix: /refund}
  - source: "*"
    action: deny
```

A rule is identified inside its document by (source, http): applying a document
updates the rules it keeps in place, creates the new ones and deletes those it
no longer lists, each through `identity.intentions` (versions, audit, one
`security` change). The order of `sources` does not matter: precedence decides
(docs/security.md); export lists them sorted.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from rest_framework import serializers

from identity.api.serializers import NAME_OR_WILDCARD, IntentionSerializer
from identity.intentions import intention_create, intention_delete, intention_update
from identity.models import Intention
from journal.records import Actor
from meshcode.base import Document, Kind

MAX_SOURCES = 200
RULE_KEYS = {"source", "action", "http", "description"}
_NAME = re.compile(NAME_OR_WILDCARD)


def _rule_key(source: str, http: Any) -> tuple[str, str]:
    return (source, json.dumps(http, sort_keys=True))


def _rule(source: str, action: str, http: Any, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"source": source, "action": action}
    if http:
        rule["http"] = http
    if description:
        rule["description"] = description
    return rule


def _document(name: str, rules: list[dict[str, Any]]) -> Document:
    ordered = sorted(rules, key=lambda r: _rule_key(r["source"], r.get("http")))
    return {"kind": "Intentions", "name": name, "sources": ordered}


class IntentionsKind(Kind):
    name: ClassVar[str] = "Intentions"

    def accepts(self, name: str) -> bool:
        return bool(_NAME.fullmatch(name))

    def documents(self) -> dict[str, Document]:
        by_destination: dict[str, list[dict[str, Any]]] = {}
        for i in Intention.objects.order_by("destination", "source", "id"):
            by_destination.setdefault(i.destination, []).append(
                _rule(i.source, i.action, i.http, i.description)
            )
        return {name: _document(name, rules) for name, rules in sorted(by_destination.items())}

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        unknown = sorted(set(body) - {"name", "sources"})
        if unknown:
            raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        sources = body.get("sources")
        if not isinstance(sources, list) or not sources:
            raise serializers.ValidationError({"sources": [
                "a list of at least one rule (to remove every rule into this destination, "
                "leave the document out and apply with --prune)"]})
        if len(sources) > MAX_SOURCES:
            raise serializers.ValidationError({"sources": [f"at most {MAX_SOURCES} rules"]})
        errors: dict[str, Any] = {}
        rules: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(sources):
            path = f"sources.{index}"
            if not isinstance(item, dict):
                errors[path] = ["a rule is a mapping: source, action, http, description"]
                continue
            extra = sorted(set(item) - RULE_KEYS)
            if extra:
                errors.update({f"{path}.{key}": ["unknown field"] for key in extra})
                continue
            serializer = IntentionSerializer(data={**item, "destination": name})
            if not serializer.is_valid():
                errors[path] = serializer.errors
                continue
            data = serializer.validated_data
            key = _rule_key(data["source"], data.get("http"))
            if key in seen:
                errors[f"{path}.source"] = [
                    f"the same source and conditions as sources.{seen[key]}"
                ]
                continue
            seen[key] = index
            rules.append(_rule(data["source"], data["action"], data.get("http"),
                               data.get("description", "")))
        if errors:
            raise serializers.ValidationError(errors)
        return _document(name, rules), {"rules": rules}

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        wanted = {_rule_key(r["source"], r.get("http")): r for r in data["rules"]}
        for current in Intention.objects.filter(destination=name).order_by("id"):
            rule = wanted.pop(_rule_key(current.source, current.http), None)
            if rule is None:
                intention_delete(user=user, intention=current, expected_version=None)
            else:
                intention_update(
                    user=user,
                    intention=current,
                    data={"action": rule["action"], "description": rule.get("description", "")},
                    expected_version=None,
                )
        for rule in wanted.values():
            intention_create(
                user=user,
                data={
                    "source": rule["source"],
                    "destination": name,
                    "action": rule["action"],
                    "http": rule.get("http"),
                    "description": rule.get("description", ""),
                },
            )

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        for current in Intention.objects.filter(destination=name).order_by("id"):
            intention_delete(user=user, intention=current, expected_version=None)
