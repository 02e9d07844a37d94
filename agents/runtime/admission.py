"""What an agent takes of a snapshot it is offered.

- **Per-upstream isolation.** An upstream whose part does not validate is
  refused alone (its path and reason go into the NACK) and keeps what the
  agent had for it; every other upstream applies. Only a snapshot whose top
  level is unusable (not an object, no revision) is refused whole. One bad
  instance address used to freeze every change for the agent.
- **Push-empty protection** (Nacos' push-empty protection, Eureka's
  self-preservation). When a snapshot takes an upstream from some endpoints to
  none although no instance was withheld by an operator (so by
  deregistration, deletion, or a control-plane fault), the agent keeps the
  last endpoints for `push_empty_hold_ms` before it believes the empty list.
  Health never empties a list (unhealthy endpoints stay listed with their
  status) and neither does an operator (withheld > 0): both apply at once.

The result is a merged snapshot whose `raw` is what was applied, so the copy on
disk and the one sent to workers parse strictly (parse_snapshot) as they are.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.snapshot import (
    Snapshot,
    SnapshotError,
    UpstreamSnapshot,
    parse_upstreams,
    snapshot_of,
)


@dataclass
class Admission:
    snapshot: Snapshot
    # path -> reason, for the NACK: the upstreams refused (kept as they were).
    refused: dict[str, str] = field(default_factory=dict)
    # Upstreams served from their last endpoints (push-empty protection), and
    # the monotonic time each hold ends.
    held: dict[str, float] = field(default_factory=dict)


def _is_push_empty(new: UpstreamSnapshot, old: UpstreamSnapshot | None) -> bool:
    return bool(old is not None and old.endpoints and not new.endpoints and not new.withheld)


def _keep_split_targets(parsed: dict[str, UpstreamSnapshot], raw_upstreams: dict[str, Any],
                        refused: dict[str, str], old_upstreams: Mapping[str, UpstreamSnapshot],
                        old_raw: Mapping[str, Any]) -> None:
    """Every route's `service` target must be in what is applied (so the merged snapshot
    parses strictly on disk and in workers). A kept (refused) upstream may split to a
    service the new snapshot dropped or refused: that service keeps its previous entry
    too. An upstream whose target is nowhere to be had is refused (its previous entry
    kept if that one is whole, else left out)."""
    dropped: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, upstream in list(parsed.items()):
            missing = sorted({s for r in upstream.routes for s in r.services}
                             - raw_upstreams.keys())
            if not missing:
                continue
            changed = True
            restorable = [m for m in missing if m in old_upstreams and m in old_raw]
            for service in restorable:
                parsed[service] = old_upstreams[service]
                raw_upstreams[service] = copy.deepcopy(old_raw[service])
            if len(restorable) == len(missing):
                continue
            gone = sorted(set(missing) - set(restorable))[0]
            refused.setdefault(f"upstreams.{name}",
                               f"upstreams.{name}.routes: split target {gone!r} is refused or "
                               "absent")
            del parsed[name]
            raw_upstreams.pop(name, None)
            if name not in dropped and name in old_upstreams and name in old_raw:
                parsed[name] = old_upstreams[name]
                raw_upstreams[name] = copy.deepcopy(old_raw[name])
            dropped.add(name)


def admit(
    raw: object,
    previous: Snapshot | None,
    *,
    holds: dict[str, float],
    now: float,
) -> Admission:
    """Validate RAW against PREVIOUS (what the agent serves now). HOLDS are the
    push-empty holds in force (service -> monotonic end). Raises SnapshotError
    only when the snapshot's top level is unusable."""
    if not isinstance(raw, dict):
        raise SnapshotError(f"snapshot: expected an object, got {type(raw).__name__}")
    parsed, errors = parse_upstreams(raw)
    merged_raw: dict[str, Any] = dict(raw)
    raw_upstreams: dict[str, Any] = dict(raw.get("upstreams") or {})
    old_upstreams = previous.upstreams if previous else {}
    old_raw = (previous.raw.get("upstreams") or {}) if previous else {}
    refused: dict[str, str] = {}
    for name, exc in errors.items():
        refused[f"upstreams.{name}"] = str(exc)[:500]
        raw_upstreams.pop(name, None)
        if name in old_upstreams and name in old_raw:
            parsed[name] = old_upstreams[name]
            raw_upstreams[name] = copy.deepcopy(old_raw[name])
    _keep_split_targets(parsed, raw_upstreams, refused, old_upstreams, old_raw)
    snapshot = snapshot_of(raw, parsed)  # top-level errors raise here
    held: dict[str, float] = {}
    hold_s = snapshot.push_empty_hold_ms / 1000
    for name, upstream in list(parsed.items()):
        old = old_upstreams.get(name)
        if hold_s <= 0 or not _is_push_empty(upstream, old) or name in errors:
            continue
        until = holds.get(name, now + hold_s)
        if now >= until:
            continue  # held long enough: the empty list is believed
        assert old is not None
        # Everything new but the endpoints (routes and subsets apply at once).
        parsed[name] = dataclasses.replace(upstream, endpoints=old.endpoints, withheld=0)
        kept = copy.deepcopy(raw_upstreams[name])
        kept["endpoints"] = copy.deepcopy((old_raw.get(name) or {}).get("endpoints", []))
        raw_upstreams[name] = kept
        held[name] = until
    merged_raw["upstreams"] = raw_upstreams
    return Admission(snapshot=snapshot_of(merged_raw, parsed), refused=refused, held=held)
