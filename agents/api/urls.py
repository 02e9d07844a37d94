"""The agents' routes under /api/v1/: the agent protocol (docs/agent-protocol.md)
and the operator's management of agents and enrollment tokens."""

from __future__ import annotations

from django.urls import path

from agents.api.certificates import CertificateView
from agents.api.manage import (
    AgentAllowReenrollView,
    AgentDetailView,
    AgentDisableView,
    EnrollmentTokenRevokeView,
    EnrollmentTokensView,
)
from agents.api.views import AgentListView, EnrollView, ReportView, config_view

urlpatterns = [
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
    path(
        "agents/<uuid:agent_id>/disable/",
        AgentDisableView.as_view(disabled=True),
        name="agent-disable",
    ),
    path(
        "agents/<uuid:agent_id>/enable/",
        AgentDisableView.as_view(disabled=False),
        name="agent-enable",
    ),
    path(
        "agents/<uuid:agent_id>/certificates/", CertificateView.as_view(), name="agent-certificates"
    ),
    path("agents/<uuid:agent_id>/config/", config_view, name="agent-config"),
    path("agents/<uuid:agent_id>/report/", ReportView.as_view(), name="agent-report"),
]
