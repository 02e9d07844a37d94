"""Rows that record what happened. The tables keep their first names
(`monitoring_*`): the models moved here from `monitoring` without a data copy."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models


class EventKind(models.TextChoices):
    HEALTH = "health", "Health transition"
    EJECTION = "ejection", "Outlier ejection"
    FAILOVER = "failover", "Failover"
    CONFIG = "config", "Configuration change"
    REGISTRY = "registry", "Registration"
    AGENT = "agent", "Agent"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Event(models.Model):
    ts = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    service = models.CharField(max_length=63, blank=True, default="", db_index=True)
    instance = models.CharField(max_length=32, blank=True, default="")
    message = models.CharField(max_length=1000)
    actor = models.CharField(max_length=200, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    revision = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_event"
        ordering: ClassVar = ["-ts", "-id"]

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message}"


class AuditEntry(models.Model):
    """Every write by a person or a token: who, what, when, before and after."""

    ts = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=32)  # create / update / delete
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=100)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_auditentry"
        ordering: ClassVar = ["-ts", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type} {self.object_id}"


class CheckResult(models.Model):
    """A change in an instance's check results (pass <-> fail), not every result:
    with the counters on the instance that is enough to explain its health."""

    ts = models.DateTimeField(db_index=True)
    service = models.CharField(max_length=63)
    instance = models.CharField(max_length=32, db_index=True)
    check_type = models.CharField(max_length=8)
    ok = models.BooleanField()
    output = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        db_table = "monitoring_checkresult"
        ordering: ClassVar = ["-ts", "-id"]

    def __str__(self) -> str:
        return f"{self.instance} {'ok' if self.ok else 'fail'} @{self.ts}"
