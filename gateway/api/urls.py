"""The gateway routes under /api/v1/gateway/ (fixed paths before a gateway's name:
`consumers` and `jwt-providers` are reserved gateway names)."""

from __future__ import annotations

from django.urls import path

from gateway.api import views

urlpatterns = [
    path("consumers/", views.ConsumerListView.as_view(), name="gateway-consumers"),
    path("consumers/<str:name>/", views.ConsumerDetailView.as_view(), name="gateway-consumer"),
    path(
        "consumers/<str:name>/keys/",
        views.ConsumerKeysView.as_view(),
        name="gateway-consumer-keys",
    ),
    path(
        "consumers/<str:name>/keys/<str:prefix>/",
        views.ConsumerKeyView.as_view(),
        name="gateway-consumer-key",
    ),
    path("jwt-providers/", views.ProviderListView.as_view(), name="gateway-jwt-providers"),
    path(
        "jwt-providers/<str:name>/",
        views.ProviderDetailView.as_view(),
        name="gateway-jwt-provider",
    ),
    path("", views.GatewayListView.as_view(), name="gateways"),
    path("<str:gw>/", views.GatewayDetailView.as_view(), name="gateway-detail"),
    path("<str:gw>/metrics/", views.GatewayMetricsView.as_view(), name="gateway-metrics"),
    path("<str:gw>/routes/", views.RouteTableView.as_view(), name="gateway-routes"),
    path(
        "<str:gw>/routes/<str:route>/",
        views.RouteDetailView.as_view(),
        name="gateway-route",
    ),
]
