"""The identity routes under /api/v1/: intentions and the CA."""

from __future__ import annotations

from django.urls import path

from identity.api.views import (
    CARetireView,
    CARootsView,
    CARotateView,
    DefaultActionView,
    IntentionCheckView,
    IntentionDetailView,
    IntentionListView,
)

urlpatterns = [
    path("intentions/", IntentionListView.as_view(), name="intentions"),
    path("intentions/default/", DefaultActionView.as_view(), name="intentions-default"),
    path("intentions/check/", IntentionCheckView.as_view(), name="intentions-check"),
    path("intentions/<str:pk>/", IntentionDetailView.as_view(), name="intention-detail"),
    path("ca/roots/", CARootsView.as_view(), name="ca-roots"),
    path("ca/rotate/", CARotateView.as_view(), name="ca-rotate"),
    path("ca/roots/<str:fingerprint>/retire/", CARetireView.as_view(), name="ca-retire"),
]
