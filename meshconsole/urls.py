"""URL map: console pages, REST API v1, OpenAPI, admin, health."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from agents.api.manage import (
    AgentAllowReenrollView,
    AgentDetailView,
    EnrollmentTokenRevokeView,
    EnrollmentTokensView,
)
from agents.api.views import AgentListView, EnrollView, ReportView, config_view
from meshconsole.health import healthz, readyz
from monitoring.api.views import EventListView, ServiceMetricsView, TopologyView
from policies.api.views import PolicyRollbackView, PolicyVersionsView, PolicyView
from registry.api.discovery import discovery_view
from registry.api.views import InstanceViewSet, ServiceViewSet

router = SimpleRouter()
router.register("services", ServiceViewSet, basename="service")
router.register(r"services/(?P<service_name>[^/]+)/instances", InstanceViewSet, basename="instance")

api_v1 = [
    path("discovery/<str:name>/", discovery_view, name="discovery"),
    path("topology/", TopologyView.as_view(), name="topology"),
    path("services/<str:name>/metrics/", ServiceMetricsView.as_view(), name="service-metrics"),
    path("services/<str:name>/policy/", PolicyView.as_view(), name="service-policy"),
    path(
        "services/<str:name>/policy/versions/",
        PolicyVersionsView.as_view(),
        name="service-policy-versions",
    ),
    path(
        "services/<str:name>/policy/rollback/",
        PolicyRollbackView.as_view(),
        name="service-policy-rollback",
    ),
    path("events/", EventListView.as_view(), name="events"),
    path("agents/", AgentListView.as_view(), name="agents"),
    path("agents/enroll/", EnrollView.as_view(), name="agent-enroll"),
    path("agents/enrollment-tokens/", EnrollmentTokensView.as_view(), name="enrollment-tokens"),
    path(
        "agents/enrollment-tokens/<str:prefix>/revoke/",
        EnrollmentTokenRevokeView.as_view(),
        name="enrollment-token-revoke",
    ),
    path("agents/<uuid:agent_id>/", AgentDetailView.as_view(), name="agent-detail"),
    path(
        "agents/<uuid:agent_id>/allow-reenroll/",
        AgentAllowReenrollView.as_view(),
        name="agent-allow-reenroll",
    ),
    path("agents/<uuid:agent_id>/config/", config_view, name="agent-config"),
    path("agents/<uuid:agent_id>/report/", ReportView.as_view(), name="agent-report"),
    *router.urls,
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
