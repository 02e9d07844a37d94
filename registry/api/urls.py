"""The registry's routes under /api/v1/ (names are part of the v1 contract)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from registry.api.discovery import discovery_view
from registry.api.views import InstanceViewSet, ServiceViewSet

router = SimpleRouter()
router.register("services", ServiceViewSet, basename="service")
router.register(r"services/(?P<service_name>[^/]+)/instances", InstanceViewSet, basename="instance")

urlpatterns = [
    path("discovery/<str:name>/", discovery_view, name="discovery"),
    *router.urls,
]
