"""Intentions: who may call whom. The precedence (one function, `precedence`)
and matching are the contract the agents enforce (docs/security.md): the
control plane sends the rules sorted, the agent takes the first that matches.

Precedence classes: exact source + exact destination (0) > `*` source + exact
destination (1) > exact source + `*` destination (2) > `*` + `*` (3); within
a class, rules with HTTP conditions first, then deny before allow, then id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from django.db import transaction

from identity.models import WILDCARD, Action, Intention, SecuritySettings
from journal.models import EventKind
from journal.records import Actor, AuditNote, EventNote, actor_name
from registry.models import SECURITY_KEY
from registry.revision import mesh_change


class HttpConditions(TypedDict, total=False):
    methods: list[str]
    path_prefix: str
    headers: dict[str, str]


class IntentionSnapshot(TypedDict):
    id: str
    source: str
    destination: str
    action: str
    http: HttpConditions | None


class VersionConflict(Exception):
    """The intention (or the default) changed since the version the writer read (409)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"changed since you read it: the current version is {current}")
        self.current = current


def precedence(rule: IntentionSnapshot) -> tuple[int, int, int, int, str]:
    """The sort key: lower first. See the module docstring."""
    exact_src = rule["source"] != WILDCARD
    exact_dst = rule["destination"] != WILDCARD
    klass = {(True, True): 0, (False, True): 1, (True, False): 2, (False, False): 3}[
        (exact_src, exact_dst)
    ]
    rid = rule["id"]
    return (
        klass,
        0 if rule["http"] else 1,
        0 if rule["action"] == Action.DENY else 1,
        len(rid),  # ids are decimal: shorter is smaller, then digit by digit
        rid,
    )


def intention_snapshot(intention: Intention) -> IntentionSnapshot:
    return {
        "id": str(intention.pk),
        "source": intention.source,
        "destination": intention.destination,
        "action": intention.action,
        "http": intention.http or None,
    }


def sorted_rules(rules: Iterable[IntentionSnapshot]) -> list[IntentionSnapshot]:
    return sorted(rules, key=precedence)


@dataclass(frozen=True)
class Request:
    """What is asked: SOURCE calling DESTINATION, over HTTP when METHOD is set."""

    source: str
    destination: str
    method: str | None = None
    path: str = "/"
    headers: Mapping[str, str] | None = None


def _name_matches(pattern: str, name: str) -> bool:
    return pattern in (WILDCARD, name)


def _http_matches(http: HttpConditions, request: Request) -> bool:
    if request.method is None:
        return False  # a rule with HTTP conditions never matches a TCP connection
    methods = http.get("methods") or []
    if methods and request.method.upper() not in methods:
        return False
    prefix = http.get("path_prefix") or ""
    if prefix and not request.path.startswith(prefix):
        return False
    headers = {k.lower(): v for k, v in (request.headers or {}).items()}
    return all(headers.get(k.lower()) == v for k, v in (http.get("headers") or {}).items())


def rule_matches(rule: IntentionSnapshot, request: Request) -> bool:
    if not (
        _name_matches(rule["source"], request.source)
        and _name_matches(rule["destination"], request.destination)
    ):
        return False
    return not rule["http"] or _http_matches(rule["http"], request)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: IntentionSnapshot | None
    reason: str


def decide(rules: list[IntentionSnapshot], default_action: str, request: Request) -> Decision:
    """The first rule (in precedence order) that matches, else the default."""
    for rule in sorted_rules(rules):
        if rule_matches(rule, request):
            return Decision(
                allowed=rule["action"] == Action.ALLOW,
                rule=rule,
                reason=f"intention {rule['id']} ({rule['source']} -> {rule['destination']}"
                f"{' with http conditions' if rule['http'] else ''}): {rule['action']}",
            )
    return Decision(
        allowed=default_action == Action.ALLOW,
        rule=None,
        reason=f"no intention matches: the mesh default is {default_action}",
    )


def default_action() -> str:
    return str(SecuritySettings.current().default_action)


def intentions_for(destinations: Iterable[str]) -> list[IntentionSnapshot]:
    """Rules whose destination is one of DESTINATIONS or `*`, in precedence order."""
    wanted = {*destinations, WILDCARD}
    return sorted_rules(
        intention_snapshot(i) for i in Intention.objects.filter(destination__in=wanted)
    )


def intention_state(intention: Intention) -> dict[str, Any]:
    return {
        **intention_snapshot(intention),
        "description": intention.description,
        "version": intention.version,
    }


def _change(user: Actor, action: str, intention_id: str, before: Any, after: Any) -> None:
    what = after or before
    mesh_change(
        keys=[SECURITY_KEY],
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=f"intention {intention_id} {action}d: {what['source']} -> "
                f"{what['destination']} {what['action']}",
                service=what["destination"] if what["destination"] != WILDCARD else "",
                actor=actor_name(user),
            )
        ],
        audit=[AuditNote(user, action, "intention", intention_id, before, after)],
    )


FIELDS = ("source", "destination", "action", "http", "description")


def intention_create(*, user: Actor, data: dict[str, Any]) -> Intention:
    with transaction.atomic():
        intention = Intention.objects.create(**{k: data[k] for k in FIELDS if k in data})
        _change(user, "create", str(intention.pk), None, intention_state(intention))
    return intention


def intention_update(
    *, user: Actor, intention: Intention, data: dict[str, Any], expected_version: int | None
) -> Intention:
    """Change INTENTION; VersionConflict if EXPECTED_VERSION is not the current one
    (checked under the row lock, like policies.services.policy_update)."""
    with transaction.atomic():
        intention = Intention.objects.select_for_update().get(pk=intention.pk)
        if expected_version is not None and expected_version != intention.version:
            raise VersionConflict(intention.version)
        before = intention_state(intention)
        for k in FIELDS:
            if k in data:
                setattr(intention, k, data[k])
        after = intention_state(intention)
        if {k: v for k, v in after.items() if k != "version"} == {
            k: v for k, v in before.items() if k != "version"
        }:
            return intention
        intention.version += 1
        intention.save()
        _change(user, "update", str(intention.pk), before, intention_state(intention))
    return intention


def intention_delete(*, user: Actor, intention: Intention, expected_version: int | None) -> None:
    with transaction.atomic():
        locked = Intention.objects.select_for_update().filter(pk=intention.pk).first()
        if locked is None:
            return
        if expected_version is not None and expected_version != locked.version:
            raise VersionConflict(locked.version)
        before = intention_state(locked)
        locked.delete()
        _change(user, "delete", before["id"], before, None)


def default_action_set(
    *, user: Actor, action: str, expected_version: int | None
) -> SecuritySettings:
    with transaction.atomic():
        row = SecuritySettings.current(lock=True)
        if expected_version is not None and expected_version != row.version:
            raise VersionConflict(row.version)
        if row.default_action == action:
            return row
        before = {"default_action": row.default_action, "version": row.version}
        row.default_action = action
        row.version += 1
        row.save()
        after = {"default_action": row.default_action, "version": row.version}
        mesh_change(
            keys=[SECURITY_KEY],
            events=[
                EventNote(
                    kind=EventKind.CONFIG,
                    message=f"intentions default action: {before['default_action']} -> {action}",
                    actor=actor_name(user),
                )
            ],
            audit=[AuditNote(user, "update", "intention-default", "default", before, after)],
        )
    return row
