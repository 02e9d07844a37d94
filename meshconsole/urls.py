"""URL map: console pages, REST API v1, OpenAPI, admin, health."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import meshconsole.schema  # noqa: F401  (registers the agent token's OpenAPI scheme)
from meshconsole.health import healthz, readyz

# Each app owns its routes (<app>/api/urls.py); the order below is the order
# Django tries them, and no two apps claim the same path.
api_v1 = [
    path("", include("registry.api.urls")),
    path("", include("policies.api.urls")),
    path("", include("identity.api.urls")),
    path("", include("monitoring.api.urls")),
    path("", include("agents.api.urls")),
    path("mesh/", include("meshcode.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("meshconsole.console.urls")),
]
