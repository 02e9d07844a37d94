"""The policy routes of a service under /api/v1/."""

from __future__ import annotations

from django.urls import path

from policies.api.routes import RoutesRollbackView, RoutesVersionsView, RoutesView
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
    path("services/<str:name>/routes/", RoutesView.as_view(), name="service-routes"),
    path(
        "services/<str:name>/routes/versions/",
        RoutesVersionsView.as_view(),
        name="service-routes-versions",
    ),
    path(
        "services/<str:name>/routes/versions/<int:version>/rollback/",
        RoutesRollbackView.as_view(),
        name="service-routes-rollback",
    ),
]
