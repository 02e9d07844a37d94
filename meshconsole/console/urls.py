"""Console pages and the login/logout views."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from meshconsole.console import audit, gateway, security, views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.overview, name="console-overview"),
    path("services/", views.service_list, name="console-services"),
    path("services/<str:name>/", views.service_detail, name="console-service"),
    path("services/<str:name>/policy/", views.service_policy, name="console-policy"),
    path(
        "services/<str:name>/dependents/",
        views.service_dependents_json,
        name="console-dependents",
    ),
    path("agents/", views.agent_list, name="console-agents"),
    path("gateway/", gateway.gateway_page, name="console-gateway"),
    path("events/", views.event_list, name="console-events"),
    path("security/", security.security_page, name="console-security"),
    path("audit/", audit.audit_page, name="console-audit"),
    path("audit/versions/<int:number>/", audit.mesh_version_page, name="console-mesh-version"),
]
