"""Services, their instances, the nodes they run on, and the mesh revision."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import NotSupportedError, models
from django.db.models import Count, Exists, F, Max, OuterRef, Q
from django.db.models.lookups import Lookup

SERVICE_NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
service_name_validator = RegexValidator(
    SERVICE_NAME_RE,
    "A service name is a DNS label: 1-63 lowercase letters, digits and hyphens, "
    "not starting or ending with a hyphen.",
)


class MeshRevision(models.Model):
    """One row, one integer: bumped with every change agents must know."""

    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"revision {self.value}"

    @classmethod
    def current(cls) -> int:
        row = cls.objects.filter(pk=1).values_list("value", flat=True).first()
        return int(row or 0)

    @classmethod
    def bump(cls) -> int:
        """Increment inside the caller's transaction and return the new value."""
        updated = cls.objects.filter(pk=1).update(value=F("value") + 1)
        if not updated:
            cls.objects.get_or_create(pk=1, defaults={"value": 0})
            cls.objects.filter(pk=1).update(value=F("value") + 1)
        return cls.current()


class MeshIndex(models.Model):
    """The revision of the last change to one part of the mesh, by key:
    `service:<name>` (its registration, instances, health, policy, failover) and
    `agent:<id>` (an agent's own upstream set). Blocking queries return the
    index of what they read, not the world's (as Consul's do), so a change wakes
    only the watchers whose answer it changes (registry.revision)."""

    key = models.CharField(max_length=300, unique=True)
    revision = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key} @ {self.revision}"

    @classmethod
    def of(cls, keys: Iterable[str]) -> int:
        """The index of an answer that depends on KEYS: the last change to any."""
        value = cls.objects.filter(key__in=list(keys)).aggregate(m=Max("revision"))["m"]
        return int(value or 0)

    @classmethod
    def each(cls, keys: Iterable[str]) -> dict[str, int]:
        """The index of each of KEYS that has one (one query)."""
        return dict(cls.objects.filter(key__in=list(keys)).values_list("key", "revision"))


def service_key(name: str) -> str:
    return f"service:{name}"


def agent_key(agent_id: object) -> str:
    return f"agent:{agent_id}"


# The mesh-wide security index key: the trust bundle, revoked serials, intentions
# and per-service mTLS modes (identity/); every agent's snapshot depends on it.
SECURITY_KEY = "security"


class MtlsMode(models.TextChoices):
    DEFAULT = "", "mesh default (MESH_MTLS_DEFAULT)"
    STRICT = "strict", "strict"
    PERMISSIVE = "permissive", "permissive"
    OFF = "off", "off"


class Protocol(models.TextChoices):
    HTTP = "http", "HTTP"
    TCP = "tcp", "TCP"


class CheckType(models.TextChoices):
    HTTP = "http", "HTTP"
    TCP = "tcp", "TCP"
    TTL = "ttl", "TTL (heartbeats)"
    NONE = "none", "None"


DEFAULT_EXPECT_STATUS = "200-399"
STATUS_RANGE_RE = r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"
status_range_validator = RegexValidator(
    STATUS_RANGE_RE, 'A status range is "200" or "200-399" (100-599).'
)


def parse_status_range(text: str) -> tuple[int, int]:
    """ "200-399" -> (200, 399); "204" -> (204, 204)."""
    low, _, high = text.partition("-")
    return int(low), int(high or low)


class JSONListContains(Lookup):
    """`JSON list holds this string`, in the database on both supported engines:
    Django's `contains` on a JSONField is PostgreSQL-only (SQLite raises), so
    each engine gets its own SQL for the same rule."""

    lookup_name = "list_contains"
    prepare_rhs = False

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        # jsonb @> jsonb_build_array(text): only whole string elements match.
        return f"{lhs} @> jsonb_build_array(%s::text)", [*lhs_params, str(self.rhs)]

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) AS element "
            "WHERE element.type = 'text' AND element.value = %s)"
        )
        return sql, [*lhs_params, str(self.rhs)]

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        raise NotSupportedError(f"list containment is not written for {connection.vendor}")


HEALTH_FILTERS = ("passing", "warning", "critical", "empty")


class ServiceQuerySet(models.QuerySet["Service"]):
    def annotate_health(self) -> ServiceQuerySet:
        """total_instances and passing_instances (enabled and passing/warning)."""
        routable = Q(instances__admin_state=AdminState.ENABLED) & Q(
            instances__health__in=ROUTABLE_HEALTH
        )
        return self.annotate(
            total_instances=Count("instances", distinct=True),
            passing_instances=Count("instances", filter=routable, distinct=True),
        )

    def with_health(self, health: str) -> ServiceQuerySet:
        """One of HEALTH_FILTERS, the same counts as annotate_health() asked as
        EXISTS probes on the instance index per service: no GROUP BY over every
        instance of the mesh, and a page's LIMIT can stop early."""
        routable = Q(admin_state=AdminState.ENABLED, health__in=ROUTABLE_HEALTH)
        some = Exists(Instance.objects.filter(service=OuterRef("pk")))
        some_routable = Exists(Instance.objects.filter(routable, service=OuterRef("pk")))
        some_not = Exists(Instance.objects.filter(~routable, service=OuterRef("pk")))
        queries = {
            "passing": Q(some) & ~Q(some_not),
            "critical": Q(some) & ~Q(some_routable),
            "warning": Q(some_routable) & Q(some_not),
            "empty": ~Q(some),
        }
        return self.filter(queries[health])

    def with_tag(self, tag: str) -> ServiceQuerySet:
        return self.filter(JSONListContains(F("tags"), tag))

    def matching(self, text: str) -> ServiceQuerySet:
        """Name or description holds TEXT (case-insensitive)."""
        return self.filter(Q(name__icontains=text) | Q(description__icontains=text))


class Service(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[service_name_validator])
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.HTTP)
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    check_type = models.CharField(max_length=8, choices=CheckType.choices, default=CheckType.TCP)
    check_path = models.CharField(max_length=255, default="/health", blank=True)
    check_interval_ms = models.PositiveIntegerField(
        default=5000, validators=[MinValueValidator(100), MaxValueValidator(3_600_000)]
    )
    check_timeout_ms = models.PositiveIntegerField(
        default=2000, validators=[MinValueValidator(10), MaxValueValidator(600_000)]
    )
    check_rise = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    check_fall = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    # HTTP check options: the passing status range ("200-399"), a substring the
    # body must contain ("" = any body), extra request headers.
    check_expect_status = models.CharField(
        max_length=7, default=DEFAULT_EXPECT_STATUS, validators=[status_range_validator]
    )
    check_body = models.CharField(max_length=200, blank=True, default="")
    check_headers = models.JSONField(default=dict, blank=True)
    # How long a drained instance keeps in-flight requests before maintenance.
    drain_timeout_ms = models.PositiveIntegerField(
        default=30_000, validators=[MinValueValidator(0), MaxValueValidator(3_600_000)]
    )
    # Inbound mTLS mode ("" = the mesh default, settings.MESH_MTLS_DEFAULT).
    mtls_mode = models.CharField(
        max_length=10, choices=MtlsMode.choices, blank=True, default=MtlsMode.DEFAULT
    )
    # Whether too few of its enabled instances are healthy (registry.panic).
    in_panic = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServiceQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_mtls(self) -> str:
        """strict | permissive | off: the service's mode, or the mesh default."""
        return self.mtls_mode or str(settings.MESH_MTLS_DEFAULT)


class Node(models.Model):
    """A host running meshagent (or a name given to instances registered by API)."""

    name = models.CharField(max_length=253, unique=True)
    zone = models.CharField(max_length=63, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class Health(models.TextChoices):
    PASSING = "passing", "Passing"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AdminState(models.TextChoices):
    ENABLED = "enabled", "Enabled"
    MAINTENANCE = "maintenance", "Maintenance"
    DRAINING = "draining", "Draining"
    DISABLED = "disabled", "Disabled"


class HealthCause(models.TextChoices):
    """What an instance's health rests on: read by the rules, never the reason text."""

    UNCHECKED = "unchecked", "No health check configured"
    AWAITING = "awaiting", "No verdict yet (first check or heartbeat, or agent back)"
    CHECK = "check", "Active checks"
    HEARTBEAT = "heartbeat", "Heartbeats (TTL, or the agent's reports)"
    AGENT = "agent", "Its agent went silent"


ROUTABLE_HEALTH = (Health.PASSING, Health.WARNING)


class InstanceQuerySet(models.QuerySet["Instance"]):
    """The one home of "which instances get traffic" (agents, discovery, panic,
    failover and explanations all ask here)."""

    def enabled(self) -> InstanceQuerySet:
        """What agents are given: enabled by the operator, with a weight, any health
        (in panic mode an agent spreads over all of them)."""
        return self.filter(admin_state=AdminState.ENABLED, weight__gt=0)

    def routable(self) -> InstanceQuerySet:
        """Enabled and healthy: what receives traffic outside panic mode."""
        return self.enabled().filter(health__in=ROUTABLE_HEALTH)


def new_instance_id() -> str:
    return uuid.uuid4().hex[:16]


class Instance(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_instance_id, editable=False)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="instances")
    address = models.CharField(max_length=253)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    zone = models.CharField(max_length=63, blank=True, default="")
    weight = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(0), MaxValueValidator(10_000)]
    )
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    # Whether an agent owns this registration (it is removed when the agent stops
    # reporting it) or a person/tool registered it through the API.
    agent_managed = models.BooleanField(default=False)

    health = models.CharField(max_length=10, choices=Health.choices, default=Health.CRITICAL)
    health_cause = models.CharField(
        max_length=12, choices=HealthCause.choices, default=HealthCause.AWAITING
    )
    admin_state = models.CharField(
        max_length=12, choices=AdminState.choices, default=AdminState.ENABLED
    )
    status_reason = models.CharField(max_length=500, blank=True, default="awaiting first check")
    status_since = models.DateTimeField(auto_now_add=True)
    # Who last changed admin_state, and when a drain began (the drain timer).
    admin_actor = models.CharField(max_length=200, blank=True, default="")
    drain_started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    # Check bookkeeping: consecutive results and when the next check is due.
    consecutive_ok = models.PositiveIntegerField(default=0)
    consecutive_fail = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_check_output = models.CharField(max_length=500, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["service__name", "address", "port"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["service", "address", "port"], name="unique_instance_endpoint"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service.name}@{self.address}:{self.port}"

    @property
    def status(self) -> str:
        """The contract's single status: admin states win over health."""
        if self.admin_state != AdminState.ENABLED:
            return str(self.admin_state)
        return str(self.health)

    @property
    def routable(self) -> bool:
        """In memory, the rule of InstanceQuerySet.routable."""
        return (
            self.admin_state == AdminState.ENABLED
            and self.health in ROUTABLE_HEALTH
            and self.weight > 0
        )

    @property
    def awaiting_verdict(self) -> bool:
        return self.health_cause == HealthCause.AWAITING

    def restart_checks(self, now: datetime) -> None:
        """In memory: a verdict from before the instance was disabled is stale, and
        nothing checked it since; start over as a new instance would."""
        self.health, self.health_cause, self.status_reason = initial_health(self.service)
        self.consecutive_ok = self.consecutive_fail = 0
        self.next_check_at = now

    def admin_transition(self, target: AdminState, *, actor: str, now: datetime) -> bool:
        """In memory: move to the operator state TARGET; returns whether it changed.
        The one rule for maintenance, drain, enable and disable (API, console,
        bulk control and the instance PATCH all come here)."""
        if self.admin_state == target:
            return False
        if target == AdminState.DRAINING and self.admin_state != AdminState.ENABLED:
            return False  # only serving instances have traffic to drain
        if self.admin_state == AdminState.DISABLED:
            self.restart_checks(now)
        self.admin_state = target
        self.admin_actor = actor
        self.status_since = now
        self.drain_started_at = now if target == AdminState.DRAINING else None
        return True


def initial_health(service: Service) -> tuple[str, str, str]:
    """(health, cause, reason) of an instance nothing has checked yet."""
    if service.check_type == CheckType.NONE:
        return Health.PASSING, HealthCause.UNCHECKED, "no health check configured"
    if service.check_type == CheckType.TTL:
        return Health.CRITICAL, HealthCause.AWAITING, "awaiting first heartbeat"
    return Health.CRITICAL, HealthCause.AWAITING, "awaiting first check"


class ManagedResource(models.Model):
    """A resource whose desired state lives in YAML (meshcode applies it; the
    registry and policy APIs read it to warn on an edit): the document last applied
    to it and the version that applied it. An edit through the API or the
    console still works, with a warning; `diff` then shows the drift."""

    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=253)
    version = models.PositiveIntegerField()
    document = models.JSONField()

    class Meta:
        ordering: ClassVar = ["kind", "name"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["kind", "name"], name="unique_managed_resource")
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} (version {self.version})"
