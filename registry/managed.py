"""Ownership: an API or console edit of a resource YAML manages still works,
and its answer says so (the `Warning` and `X-Mesh-Managed` headers); the next
`diff` shows the drift."""

from __future__ import annotations

from typing import TypeVar

from django.http import HttpResponseBase

from registry.models import ManagedResource

R = TypeVar("R", bound=HttpResponseBase)


def managed_warning(kind: str, name: str) -> str | None:
    """The warning for an edit of KIND/NAME, or None when YAML does not manage it."""
    row = ManagedResource.objects.filter(kind=kind, name=name).only("version").first()
    if row is None:
        return None
    return (
        f"{kind}/{name} is managed by mesh version {row.version} (mesh as code); "
        "this edit stands until the next apply, and `meshctl diff` shows it as drift"
    )


def warn_if_managed(response: R, kind: str, name: str) -> R:
    """Mark RESPONSE (a successful write of KIND/NAME) when YAML manages it."""
    text = managed_warning(kind, name)
    if text is not None and response.status_code < 300:
        response["X-Mesh-Managed"] = f"{kind}/{name}"
        # RFC 7234 warn-code 299 "miscellaneous persistent warning"; quotes escaped.
        response["Warning"] = '299 meshconsole "{}"'.format(text.replace('"', "'"))
    return response
