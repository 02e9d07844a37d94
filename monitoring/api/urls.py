"""Monitoring routes under /api/v1/: topology, per-service metrics, what-if, events."""

from __future__ import annotations

from django.urls import path

from monitoring.api.instances import InstanceMetricsView, ServiceInstancesMetricsView
from monitoring.api.timetravel import TopologyAtView, TopologyHistoryView
from monitoring.api.views import EventListView, ServiceMetricsView, TopologyView
from monitoring.api.whatif import WhatIfView

urlpatterns = [
    path("topology/", TopologyView.as_view(), name="topology"),
    path("topology/history/", TopologyHistoryView.as_view(), name="topology-history"),
    path("topology/history/at/", TopologyAtView.as_view(), name="topology-at"),
    path("services/<str:name>/metrics/", ServiceMetricsView.as_view(), name="service-metrics"),
    path(
        "services/<str:name>/metrics/instances/",
        ServiceInstancesMetricsView.as_view(),
        name="service-instances-metrics",
    ),
    path(
        "services/<str:name>/instances/<str:id>/metrics/",
        InstanceMetricsView.as_view(),
        name="instance-metrics",
    ),
    path("services/<str:name>/what-if/", WhatIfView.as_view(), name="service-what-if"),
    path("events/", EventListView.as_view(), name="events"),
]
