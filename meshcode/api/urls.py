from __future__ import annotations

from django.urls import path

from meshcode.api import views

urlpatterns = [
    path("schema/", views.SchemaView.as_view(), name="mesh-schema"),
    path("diff/", views.DiffView.as_view(), name="mesh-diff"),
    path("apply/", views.ApplyView.as_view(), name="mesh-apply"),
    path("export/", views.ExportView.as_view(), name="mesh-export"),
    path("versions/", views.VersionsView.as_view(), name="mesh-versions"),
    path("rollback/", views.RollbackView.as_view(), name="mesh-rollback"),
]
