"""Console pages: login required, render for a user, all assets local."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from agents.models import Agent
from journal.models import Event, EventKind
from registry import services
from registry.models import Node, Service

PAGES = [
    "/", "/services/", "/services/payments/", "/services/payments/policy/", "/agents/", "/events/",
    "/audit/",
]
ASSET_ATTR = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I
)


@pytest.fixture
def payments(admin_user: User) -> Service:
    service = services.service_create(
        user=admin_user, data={"name": "payments", "tags": ["pci"], "description": "card charges"}
    )
    services.instance_register(
        user=admin_user,
        service=service,
        data={"address": "10.0.0.5", "port": 8080, "zone": "zone-1", "node": "host-b"},
    )
    return service


@pytest.fixture
def logged_in(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_page_redirects_anonymous_to_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_for_logged_in_user(logged_in: Client, payments: Service, path: str) -> None:
    response = logged_in.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    for link in ("/services/", "/agents/", "/events/", "/api/docs/", "/admin/"):
        assert f'href="{link}"' in html
    # Logging out is a POST with a CSRF token, never a GET link.
    assert re.search(r'<form method="post" action="/logout/"', html)
    assert "csrfmiddlewaretoken" in html


def test_login_page_renders_form(client: Client, db: None) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_login_form_logs_in_and_redirects_to_overview(client: Client, admin_user: User) -> None:
    response = client.post("/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_logout_is_a_post(logged_in: Client) -> None:
    response = logged_in.post("/logout/")
    assert response.status_code == 302
    assert logged_in.get("/").status_code == 302


def test_unknown_service_page_is_404(logged_in: Client) -> None:
    assert logged_in.get("/services/nope/").status_code == 404


@pytest.mark.parametrize("path", [*PAGES, "/login/"])
def test_pages_reference_no_external_asset(
    client: Client, admin_user: User, payments: Service, path: str
) -> None:
    if path != "/login/":
        client.force_login(admin_user)
    html = client.get(path).content.decode()
    assets = ASSET_ATTR.findall(html)
    assert assets, "expected the page to load local assets"
    for url in assets:
        assert not re.match(r"^(https?:)?//", url), f"{path} loads an external asset: {url}"
    assert "http://" not in html and "https://" not in html


def test_console_static_files_reference_nothing_external() -> None:
    root = Path(settings.BASE_DIR) / "meshconsole" / "static" / "console"
    files = [p for p in root.iterdir() if p.suffix in {".js", ".css"}]
    assert files
    for path in files:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name
        assert "@import" not in text and "url(" not in text, path.name


def test_plotly_is_served_locally(client: Client, db: None) -> None:
    response = client.get("/static/plotly/plotly.min.js")
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"plotly" in body[:2000].lower()


def test_overview_loads_the_topology_after_the_page(logged_in: Client, payments: Service) -> None:
    html = logged_in.get("/").content.decode()
    # The graph comes from /api/v1/topology/ (overview.js), not from the HTML:
    # a 10,000-service mesh must not make the page itself megabytes.
    assert 'id="topology-data"' not in html and "payments" not in html
    assert '<script src="/static/plotly/plotly.min.js">' in html
    script = (Path(settings.BASE_DIR) / "meshconsole" / "static" / "console" / "overview.js").read_text()
    assert 'Mesh.api("/api/v1/topology/' in script


def test_services_page_is_paged(logged_in: Client, db: None) -> None:
    Service.objects.bulk_create(Service(name=f"svc-{i:03d}") for i in range(105))
    html = logged_in.get("/services/").content.decode()
    assert 'data-service="svc-099"' in html and 'data-service="svc-100"' not in html
    assert "page 1 of 2" in html and 'href="?page=2"' in html
    second = logged_in.get("/services/?page=2").content.decode()
    assert 'data-service="svc-104"' in second and 'data-service="svc-000"' not in second
    searched = logged_in.get("/services/?q=svc-10").content.decode()
    assert searched.count('<tr data-service="svc-10') == 5 and "page 1 of" not in searched


def test_services_page_shows_health_and_tags(logged_in: Client, payments: Service) -> None:
    html = logged_in.get("/services/").content.decode()
    assert 'data-service="payments"' in html
    assert "0/1" in html
    assert ">pci<" in html


@pytest.mark.parametrize(
    ("query", "shown"), [("pay", True), ("pci", True), ("card", True), ("zzz", False)]
)
def test_services_search_matches_name_tags_and_description(
    logged_in: Client, payments: Service, query: str, shown: bool
) -> None:
    html = logged_in.get("/services/", {"q": query}).content.decode()
    assert ('data-service="payments"' in html) is shown


def test_service_page_embeds_service_with_instances(logged_in: Client, payments: Service) -> None:
    html = logged_in.get("/services/payments/").content.decode()
    assert 'id="service-data"' in html
    assert "10.0.0.5" in html and "host-b" in html


def test_agents_page_shows_status(logged_in: Client, db: None) -> None:
    now = timezone.now()
    Agent.objects.create(
        node=Node.objects.create(name="host-ok", zone="z1"),
        token_hash="a" * 64,
        version="1.0",
        last_seen=now,
        applied_revision=7,
    )
    Agent.objects.create(
        node=Node.objects.create(name="host-quiet"),
        token_hash="b" * 64,
        last_seen=now - timedelta(seconds=settings.MESH_HEARTBEAT_TTL + 5),
    )
    Agent.objects.create(
        node=Node.objects.create(name="host-nack"),
        token_hash="c" * 64,
        last_seen=now,
        nack_revision=8,
        nack_reason="unknown upstream 'x'",
    )
    html = logged_in.get("/agents/").content.decode()
    assert 'data-agent="host-ok" data-status="ok"' in html
    assert 'data-agent="host-quiet" data-status="silent"' in html
    assert 'data-agent="host-nack" data-status="nack"' in html
    assert "unknown upstream &#x27;x&#x27;" in html


def test_events_page_filters_by_kind_and_service(logged_in: Client, payments: Service) -> None:
    Event.objects.create(kind=EventKind.FAILOVER, service="orders", message="orders failed over")
    html = logged_in.get("/events/").content.decode()
    assert "orders failed over" in html and "service payments registered" in html
    html = logged_in.get("/events/", {"kind": "failover"}).content.decode()
    assert "orders failed over" in html and "service payments registered" not in html
    html = logged_in.get("/events/", {"service": "payments"}).content.decode()
    assert "orders failed over" not in html and "service payments registered" in html
    # An unknown kind is ignored rather than an error.
    assert logged_in.get("/events/", {"kind": "bogus"}).status_code == 200


@pytest.mark.django_db
def test_service_page_carries_each_instance_explanation(
    logged_in: Client, payments: Service
) -> None:
    import json

    html = logged_in.get("/services/payments/").content.decode()
    data = json.loads(re.search(r'id="service-data"[^>]*>(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    (instance,) = data["instances"]
    # A TCP-checked instance not checked yet, the only one: the service panics.
    assert instance["explanation"].startswith("critical since")
    assert "(awaiting first check); still receives traffic: payments is in panic mode" in (
        instance["explanation"]
    )
    assert 'id="bulk-form"' in html


@pytest.mark.parametrize("path", ["/services/nope/", "/services/nope/policy/"])
def test_unknown_service_is_a_styled_404(logged_in: Client, db: None, path: str) -> None:
    response = logged_in.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert 'id="not-found"' in html and "There is no service named “nope”." in html
    assert "/static/console/console.css" in html and 'class="topbar"' in html


def test_any_unknown_page_is_the_styled_404(logged_in: Client, db: None) -> None:
    response = logged_in.get("/no/such/page/")
    assert response.status_code == 404
    assert 'id="not-found"' in response.content.decode()


def test_policy_page_renders_every_option(logged_in: Client, payments: Service) -> None:
    html = logged_in.get("/services/payments/policy/").content.decode()
    for name in (
        "load_balancer", "hash_on.type", "hash_on.name", "connect_timeout", "request_timeout",
        "idle_timeout", "retries.attempts", "retries.per_try_timeout", "retries.on",
        "retries.backoff_base", "retries.backoff_max", "retries.budget_percent",
        "retries.min_per_second", "outlier.consecutive_5xx", "outlier.consecutive_gateway",
        "outlier.base_ejection", "outlier.max_ejection_percent",
        "circuit_breaker.max_connections", "circuit_breaker.max_pending",
        "circuit_breaker.max_requests", "rate_limit.enabled", "rate_limit.rps",
        "rate_limit.burst", "panic_threshold_percent", "locality.enabled", "zone_priority",
        "failover.targets", "failover.hold_down",
    ):
        assert f'name="{name}"' in html, name
    # Every form field has a label (keyboard and screen-reader use).
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
        assert f'for="{field_id}"' in html, field_id


def test_dependents_name_callers_and_failover_referrers(
    logged_in: Client, admin_user: User, payments: Service
) -> None:
    from agents.runtime import histogram
    from monitoring.models import EdgeWindow
    from policies.services import policy_update

    orders = services.service_create(user=admin_user, data={"name": "orders"})
    now = timezone.now()
    for source, age in (("orders", 30), ("web", 60), ("old-caller", 7200), ("payments", 10)):
        EdgeWindow.objects.create(
            window_end=now - timedelta(seconds=age), seconds=10, node="host-a", source=source,
            destination="payments", requests=10, errors=0, buckets=histogram.empty(),
        )
    policy_update(user=admin_user, service=orders, data={"failover_targets": ["payments"]})
    data = logged_in.get("/services/payments/dependents/").json()
    assert data == {"service": "payments", "callers": ["orders", "web"],
                    "failover_referrers": ["orders"]}
    assert logged_in.get("/services/nope/dependents/").status_code == 404


def test_services_page_shows_operator_state_not_failure(
    logged_in: Client, admin_user: User, payments: Service
) -> None:
    instance = payments.instances.get()
    services.instance_update(user=admin_user, instance=instance, data={"maintenance": True})
    html = logged_in.get("/services/").content.decode()
    assert '<span class="health maintenance"><i class="dot maintenance"></i>0/1</span>' in html


def test_service_and_policy_pages_warn_when_yaml_manages_them(
    logged_in: Client, payments: Service
) -> None:
    from registry.models import ManagedResource

    assert "managed-notice" not in logged_in.get("/services/payments/").content.decode()
    ManagedResource.objects.create(kind="Service", name="payments", version=4, document={})
    ManagedResource.objects.create(kind="TrafficPolicy", name="payments", version=4, document={})
    for page in ("/services/payments/", "/services/payments/policy/"):
        body = logged_in.get(page).content.decode()
        assert 'id="managed-notice"' in body
        assert "managed by mesh version 4" in body


def test_agents_page_lists_what_each_host_runs_and_calls(
    logged_in: Client, db: None, django_assert_max_num_queries: Any
) -> None:
    from registry.models import Instance

    orders = Service.objects.create(name="orders")
    for n in range(3):
        node = Node.objects.create(name=f"host-{n}")
        Agent.objects.create(
            node=node, token_hash=f"{n}" * 64, last_seen=timezone.now(),
            upstreams=[{"service": "payments", "listen": f"127.0.0.1:910{n}", "protocol": "http"}],
        )
        Instance.objects.create(service=orders, address="10.0.0.1", port=8080 + n, node=node)
    html = logged_in.get("/agents/").content.decode()
    assert 'data-runs="orders:8081"' in html and 'data-calls="payments"' in html
    assert "127.0.0.1:9102" in html
    # The page's hosts' instances in one query, whatever the number of hosts.
    with django_assert_max_num_queries(12):
        logged_in.get("/agents/")
