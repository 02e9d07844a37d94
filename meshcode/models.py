"""The mesh as code: every apply is a numbered MeshVersion; what an apply wrote
is ManagedResource (docs/mesh-as-code.md)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class ApplyLock(models.Model):
    """One row (created by the migration), locked by every apply and rollback:
    two applies read the mesh and write it one after the other, never interleaved."""

    def __str__(self) -> str:
        return "apply lock"


class MeshVersion(models.Model):
    """One apply (or rollback): the documents as applied, which `rollback`
    restores exactly, and the mesh revision it was written with."""

    number = models.PositiveIntegerField(unique=True)
    author = models.CharField(max_length=200)
    message = models.CharField(max_length=1000, blank=True, default="")
    documents = models.JSONField(default=list)
    prune = models.BooleanField(default=False)
    revision = models.BigIntegerField(null=True, blank=True)
    rollback_of = models.PositiveIntegerField(null=True, blank=True)
    summary = models.JSONField(default=dict)  # {"added": n, "changed": n, "deleted": n, ...}
    # Every document YAML manages once this version is in: what a rollback restores.
    managed = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["-number"]

    def __str__(self) -> str:
        return f"mesh version {self.number}"
