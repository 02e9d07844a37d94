"""The security page: access rules (intentions) in precedence order with their
editor, the default action, the "would A be allowed to call B?" check, the CA's
roots and how services accept inbound calls (mTLS modes). Every write is the
REST API's (`identity/api/`), from static/console/security.js."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from identity.intentions import intention_snapshot, intention_state, precedence, sorted_rules
from identity.models import WILDCARD, CARoot, Intention, SecuritySettings
from identity.services import root_live_leaves, signing_root
from registry.managed import managed_warning
from registry.models import Service


def _conditions(http: dict[str, Any] | None) -> str:
    if not http:
        return ""
    parts = []
    if http.get("methods"):
        parts.append(" ".join(http["methods"]))
    if http.get("path_prefix"):
        parts.append(f"{http['path_prefix']}*")
    for name, value in (http.get("headers") or {}).items():
        parts.append(f"{name}: {value}")
    return " · ".join(parts)


@require_GET
@login_required
def security_page(request: HttpRequest) -> HttpResponse:
    wanted = request.GET.get("service", "").strip()[:63]
    intentions = Intention.objects.all()
    if wanted:
        intentions = intentions.filter(destination__in=[wanted, WILDCARD]) | intentions.filter(
            source__in=[wanted]
        )
    states = {str(i.pk): intention_state(i) for i in intentions}
    rules = []
    ordered = sorted_rules(intention_snapshot(i) for i in intentions)
    for rank, rule in enumerate(ordered, start=1):
        state = states[rule["id"]]
        rules.append({
            **state,
            "rank": rank,
            "conditions": _conditions(state["http"]),
            "json": json.dumps(state),
            "managed": managed_warning("Intentions", state["destination"]) is not None,
            "precedence": precedence(rule)[0],
        })
    row = SecuritySettings.current()
    signer = signing_root()
    roots = [
        {"fingerprint": r.fingerprint, "not_after": r.not_after, "signing": r.pk == signer.pk,
         "supplied": r.supplied, "live": root_live_leaves(r)}
        for r in CARoot.objects.filter(retired_at__isnull=True).order_by("created_at")
    ]
    modes = Counter(Service.objects.values_list("mtls_mode", flat=True))
    context = {
        "rules": rules,
        "service": wanted,
        "default_action": row.default_action,
        "default_version": row.version,
        "allow_rules": Intention.objects.filter(action="allow").count(),
        "roots": roots,
        "trust_domain": settings.MESH_TRUST_DOMAIN,
        "mtls_default": settings.MESH_MTLS_DEFAULT,
        "mtls_modes": [
            ("strict", modes.get("strict", 0)),
            ("permissive", modes.get("permissive", 0)),
            ("off", modes.get("off", 0)),
            (f"mesh default ({settings.MESH_MTLS_DEFAULT})", modes.get("", 0)),
        ],
    }
    return render(request, "console/security.html", context)
