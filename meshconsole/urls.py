"""URL map: console pages, REST API v1, OpenAPI, admin, health."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import meshconsole.schema  # noqa: F401  (registers the agent token's OpenAPI scheme)
from meshconsole.audit import AuditExportView, AuditListView
from meshconsole.health import healthz, readyz
from meshconsole.users import UserDetailView, UsersView

# Each app owns its routes (<app>/api/urls.py); the order below is the order
# Django tries them, and no two apps claim the same path.
api_v1: list[URLPattern | URLResolver] = [
    path("", include("registry.api.urls")),
    path("", include("policies.api.urls")),
    path("", include("identity.api.urls")),
    path("", include("monitoring.api.urls")),
    path("", include("agents.api.urls")),
    path("gateway/", include("gateway.api.urls")),
    path("mesh/", include("meshcode.api.urls")),
    path("audit/", AuditListView.as_view(), name="audit"),
    path("audit/export/", AuditExportView.as_view(), name="audit-export"),
    path("users/", UsersView.as_view(), name="users"),
    path("users/<str:username>/", UserDetailView.as_view(), name="user-detail"),
]

handler404 = "meshconsole.api.not_found"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("meshconsole.console.urls")),
]
