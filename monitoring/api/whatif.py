"""POST services/{name}/what-if/: the predicted load of a pending edit (writes nothing)."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.db import read_transaction
from monitoring.whatif import WhatIfError, what_if
from registry.models import Service


class WhatIfView(APIView):
    """Before apply: per-instance rps after the edit, panic, failover, affected callers."""

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, name: str) -> Response:
        service = get_object_or_404(Service, name=name)
        edit: Any = request.data
        if not isinstance(edit, dict) or set(edit) - {"instances", "policy", "failover"}:
            raise ValidationError(
                {"detail": "an object with instances, policy and/or failover to try"}
            )
        try:
            with read_transaction():
                return Response(what_if(service, edit))
        except WhatIfError as exc:
            raise ValidationError(exc.errors) from None
