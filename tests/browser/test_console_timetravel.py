"""Time travel on the overview: move the slider to a minute in the past, see
the graph as it was then (a service passing that is in maintenance now), the
change marked on the timeline, its diff on click; back to live."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ConsoleServer
from tests.browser.test_console_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

# Ten minutes ago "travel" was passing (a frame); then an operator put its
# instance in maintenance (audited) and the frame of this minute shows it.
SEED = """
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from journal.models import AuditEntry
from monitoring.timetravel import frame_record
from registry import control, services
from registry.models import Instance
user = User.objects.get(username="browser-admin")
service = services.service_create(user=user, data={"name": "travel", "check_type": "none"})
instance = services.instance_register(user=user, service=service,
                                      data={"address": "127.0.0.1", "port": 9501})
then = timezone.now() - timedelta(minutes=10)
frame_record(then)
services.instance_update(user=user, instance=instance, data={"maintenance": True})
AuditEntry.objects.filter(object_type="instance", object_id=instance.id, action="update").update(
    ts=then + timedelta(minutes=5))
frame_record(then + timedelta(minutes=5))
frame_record()
"""


def node_state(page: Any, name: str) -> str:
    return page.get_attribute(f'#topology-services li[data-service="{name}"]', "data-state")


def test_the_slider_replays_the_past_and_marks_the_change(page: Any, console_server: ConsoleServer) -> None:
    console_server.manage("shell", "-c", SEED)
    log_in(page)
    page.goto("/")
    page.wait_for_selector('#topology-services li[data-service="travel"][data-state="maintenance"]')
    page.wait_for_selector("#time-slider[data-frames='3']")
    assert page.get_attribute("#time-slider", "max") == "3"
    # The oldest frame: travel was passing.
    page.locator("#time-slider").fill("0")
    page.wait_for_selector('#topology-services li[data-service="travel"][data-state="passing"]')
    assert "Replaying" in page.inner_text("#topology-meta")
    assert page.is_visible("#time-live")
    # The maintenance change is marked; a click shows what it changed.
    page.locator("#timeline-marks .mark-audit[aria-label*='update instance']").first.click()
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    row = dialog.locator('tr[data-field="status"]')
    assert row.locator(".diff-before").inner_text() == '"passing"'
    assert row.locator(".diff-after").inner_text() == '"maintenance"'
    page.keyboard.press("Escape")
    page.click("#time-live")
    page.wait_for_selector('#topology-services li[data-service="travel"][data-state="maintenance"]')
    assert "Traffic over the last" in page.inner_text("#topology-meta")
