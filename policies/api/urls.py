"""The policy routes of a service under /api/v1/."""

from __future__ import annotations

from django.urls import path

from policies.api.views import PolicyRollbackView, PolicyVersionsView, PolicyView

urlpatterns = [
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
]
