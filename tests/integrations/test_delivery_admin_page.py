"""A delivery's admin page shows its payload readably: long lines (an email's text and HTML)
wrap inside the page instead of running past its right edge, and a reader for whom today's
field protection masked part of it is told so, next to the payload."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from etl_monitor.models import FieldProtection
from etl_monitor.roles import Role
from incidents.models import Incident
from integrations.models import Channel, Delivery
from integrations.notifications.outbox import delivery_queue
from tests.integrations.conftest import incident_open_for

NOTE = "masked under today's field protection"


@pytest.fixture
def delivery(new_loader) -> Delivery:
    loader = new_loader("MARGIN-FEED", name="Quarterly margin feed")
    incident = incident_open_for(loader)
    incident = Incident.objects.select_related("loader__owner").get(pk=incident.pk)
    return delivery_queue(
        incident=incident,
        event=None,
        channel=Channel.objects.get(name="email"),
        target="ops@example.com",
        purpose="OPENED",
        key="k-email",
        enqueue=False,
    )


def page(user: User, delivery: Delivery) -> str:
    client = Client()
    client.force_login(user)
    answer = client.get(f"/admin/integrations/delivery/{delivery.pk}/change/")
    assert answer.status_code == 200
    return answer.content.decode()


def test_the_payload_wraps_inside_the_page(viewer: User, delivery: Delivery) -> None:
    pre = re.search(r"<pre[^>]*>", page(viewer, delivery)).group(0)
    assert "pre-wrap" in pre


def test_a_reader_whose_view_is_masked_is_told_so(viewer: User, editor: User, delivery: Delivery) -> None:
    rule = FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    rule.exempt_groups.set([Group.objects.get(name=Role.EDITOR)])
    masked = page(viewer, delivery)
    assert "Quarterly margin feed" not in masked and NOTE in masked
    as_sent = page(editor, delivery)
    assert "Quarterly margin feed" in as_sent and NOTE not in as_sent


def test_without_protection_nothing_is_said_to_be_masked(viewer: User, delivery: Delivery) -> None:
    assert NOTE not in page(viewer, delivery)
