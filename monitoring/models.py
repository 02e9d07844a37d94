"""Traffic windows the agents report (events and audit rows live in `journal`)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class TrafficWindow(models.Model):
    """What every report window carries, whatever it counts (an edge, an instance):
    when, how long, which agent, and the figures."""

    window_end = models.DateTimeField(db_index=True)
    seconds = models.FloatField()
    node = models.CharField(max_length=253)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0)
    # Counts per fixed log-scale bucket (see agents.runtime.histogram.BUCKETS_MS).
    buckets = models.JSONField(default=list)
    # "<stream entry id>:<index>" when written by monitoring.ingest: a batch
    # taken again after its worker died is not stored twice.
    ingest_key = models.CharField(max_length=48, null=True, blank=True, unique=True)

    class Meta:
        abstract = True
        ordering: ClassVar = ["-window_end"]


class TrafficRollup(models.Model):
    """What every rollup row carries (monitoring.rollups): the period and the figures
    summed over it."""

    resolution = models.PositiveIntegerField()  # seconds: 60 or 600
    start = models.DateTimeField()
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0)
    buckets = models.JSONField(default=list)

    class Meta:
        abstract = True
        ordering: ClassVar = ["resolution", "start"]


class EdgeWindow(TrafficWindow):
    """Traffic one agent saw on one caller->callee edge during one report window."""

    source = models.CharField(max_length=63)
    destination = models.CharField(max_length=63)
    # Refused by an intention at the destination's inbound listener (requests for
    # HTTP, connections for TCP); counted apart from requests (zero-trust contract).
    denied = models.PositiveIntegerField(default=0)
    # Seen by a gateway agent: `source` is the gateway's name, the topology's entry node.
    gateway = models.BooleanField(default=False)
    # L7 routes (docs/agent-protocol.md "Routes, subsets and the gateway"): the
    # subset and route that carried the traffic ("" = none), the gateway's
    # consumer ("" = none) and status classes ({"2xx": n, ...}; null = not sent).
    subset = models.CharField(max_length=63, blank=True, default="")
    route = models.CharField(max_length=63, blank=True, default="")
    consumer = models.CharField(max_length=63, blank=True, default="")
    statuses = models.JSONField(null=True, blank=True)

    class Meta(TrafficWindow.Meta):
        indexes: ClassVar = [models.Index(fields=["source", "destination", "window_end"])]

    def __str__(self) -> str:
        return f"{self.source}->{self.destination} @{self.window_end}"


class TopologyFrame(models.Model):
    """The topology of one minute (monitoring.timetravel): what the overview's
    time slider replays. 1-minute frames for MESH_TIMETRAVEL_FINE, then one per
    10 minutes, until MESH_TIMETRAVEL_RETENTION."""

    minute = models.DateTimeField(unique=True)
    topology = models.JSONField()

    class Meta:
        ordering: ClassVar = ["minute"]

    def __str__(self) -> str:
        return f"topology at {self.minute:%Y-%m-%d %H:%M}"


class EdgeRollup(TrafficRollup):
    """The traffic of one caller->callee edge over one minute (resolution 60) or ten
    minutes (600), summed from the agents' windows by monitoring.rollups: what charts
    read past MESH_METRICS_RETENTION, in bounded storage."""

    source = models.CharField(max_length=63)
    destination = models.CharField(max_length=63)
    denied = models.PositiveBigIntegerField(default=0)

    class Meta(TrafficRollup.Meta):
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["resolution", "start", "source", "destination"], name="one_rollup_per_edge"
            )
        ]
        indexes: ClassVar = [
            models.Index(fields=["destination", "resolution", "start"]),
            models.Index(fields=["source", "resolution", "start"]),
        ]

    def __str__(self) -> str:
        return f"{self.source}->{self.destination} {self.resolution}s @{self.start}"


class InstanceWindow(TrafficWindow):
    """Traffic one agent sent to one upstream instance (the endpoint that served each
    try) during one report window: the instance's inbound golden figures, as its
    callers saw them (docs/agent-protocol.md "Report", `instances`)."""

    # The upstream the caller's agent called; during a failover, the instance is the target's.
    service = models.CharField(max_length=63)
    instance = models.CharField(max_length=32)

    class Meta(TrafficWindow.Meta):
        indexes: ClassVar = [models.Index(fields=["instance", "window_end"])]

    def __str__(self) -> str:
        return f"{self.service}/{self.instance} @{self.window_end}"


class InstanceRollup(TrafficRollup):
    """One instance's inbound traffic over one minute (60) or ten minutes (600),
    summed from InstanceWindow rows by monitoring.rollups, like EdgeRollup."""

    service = models.CharField(max_length=63)
    instance = models.CharField(max_length=32)

    class Meta(TrafficRollup.Meta):
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["resolution", "start", "service", "instance"],
                name="one_rollup_per_instance",
            )
        ]
        indexes: ClassVar = [models.Index(fields=["instance", "resolution", "start"])]

    def __str__(self) -> str:
        return f"{self.service}/{self.instance} {self.resolution}s @{self.start}"
