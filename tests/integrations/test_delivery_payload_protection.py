"""A stored delivery payload is read under today's field protection: a loader's name or owner
that became HIDDEN or MASKED after the message was rendered is gone from the payload for the
roles the rule covers (API and admin), in every channel's rendering (plain text, HTML-escaped
email, Slack, Jira wiki markup, webhook JSON), its earlier values too; an exempt role still
reads the message as it was sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from etl_monitor.models import FieldProtection
from etl_monitor.protection import MASK, FieldPolicy
from etl_monitor.roles import Role
from incidents.models import Incident
from integrations.models import Channel, Delivery, DeliveryStatus
from integrations.notifications import channels
from integrations.notifications.outbox import delivery_queue
from loaders import services
from loaders.models import Loader, Team
from tests.integrations.conftest import incident_open_for

NAME = "Quarterly Margin & Risk 'Feed'"  # characters each channel escapes its own way
OLD_NAME = "Legacy Ledger Sync"
OWNER = "Treasury Quants"
SENSITIVE = ("Margin", "Ledger", OWNER)  # fragments that survive any escaping


@pytest.fixture
def deliveries(admin_user, editor, new_loader) -> list[Delivery]:
    """One message per channel kind about an incident of a loader, rendered while nothing was
    protected, and after a rename (so an earlier name is in a stored payload too)."""
    treasury = Team.objects.create(slug="treasury", name=OWNER, email="treasury@example.com")
    loader = new_loader("MARGIN-FEED", name=OLD_NAME, owner=treasury.slug)
    incident = incident_open_for(loader)
    hook = channels.channel_save(
        user=admin_user, data={"name": "hook", "kind": "WEBHOOK", "url": "https://receiver.example.com/in"}
    )
    targets = {"email": "ops@example.com", "slack": "#alerts", "jira": "ETL", "hook": hook.url}

    def render(tag: str) -> list[Delivery]:
        fresh = Incident.objects.select_related("loader__owner").get(pk=incident.pk)
        return [
            delivery_queue(
                incident=fresh,
                event=None,
                channel=Channel.objects.get(name=name),
                target=target,
                purpose="OPENED",
                key=f"{tag}-{name}",
                enqueue=False,
            )
            for name, target in targets.items()
        ]

    before_rename = render("old")
    services.loader_edit(user=editor, loader=Loader.objects.get(pk=loader.pk), data={"name": NAME})
    rendered = [*before_rename, *render("new")]
    text = json.dumps([d.payload for d in rendered])
    assert OLD_NAME in text and "Margin" in text and OWNER in text  # what the test expects to disappear
    return rendered


def protect(**levels: str) -> None:
    """Protect loader fields (``name="HIDDEN"``…), exempting Editors."""
    for field, level in levels.items():
        rule = FieldProtection.objects.create(model_label="loaders.loader", field_name=field, level=level)
        rule.exempt_groups.set([Group.objects.get(name=Role.EDITOR)])


def api_payloads(user: Any, deliveries: list[Delivery]) -> str:
    client = APIClient()
    client.force_authenticate(user)
    bodies = []
    for delivery in deliveries:
        response = client.get(f"/api/v1/deliveries/{delivery.pk}/")
        assert response.status_code == 200
        bodies.append(json.dumps(response.json(), ensure_ascii=False))
    return "\n".join(bodies)


def admin_pages(user: Any, deliveries: list[Delivery]) -> str:
    client = Client()
    client.force_login(user)
    pages = []
    for delivery in deliveries:
        response = client.get(f"/admin/integrations/delivery/{delivery.pk}/change/")
        assert response.status_code == 200
        pages.append(response.content.decode())
    return "\n".join(pages)


def test_before_any_rule_every_role_reads_the_payload_as_sent(viewer, deliveries):
    for shown in (api_payloads(viewer, deliveries), admin_pages(viewer, deliveries)):
        assert all(fragment in shown for fragment in SENSITIVE)


@pytest.mark.parametrize("level", ["HIDDEN", "MASKED"])
def test_a_field_protected_since_is_gone_from_stored_payloads_for_the_roles_it_covers(
    viewer, operator, admin_user, deliveries, level
):
    protect(name=level, owner=level)
    for user in (viewer, operator, admin_user):
        for shown in (api_payloads(user, deliveries), admin_pages(user, deliveries)):
            assert [fragment for fragment in SENSITIVE if fragment in shown] == [], user
            assert MASK in shown
            assert "MARGIN-FEED" in shown  # the loader code stays: it is not protectable


def test_an_exempt_role_still_reads_the_payload_as_sent(editor, deliveries):
    protect(name="HIDDEN", owner="MASKED")
    for shown in (api_payloads(editor, deliveries), admin_pages(editor, deliveries)):
        assert all(fragment in shown for fragment in SENSITIVE)


def test_only_the_protected_field_is_masked(viewer, deliveries):
    protect(owner="HIDDEN")
    shown = api_payloads(viewer, deliveries)
    assert OWNER not in shown and "Margin" in shown and OLD_NAME in shown


def test_the_retry_answer_is_filtered_too(settings, operator, deliveries):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    protect(name="HIDDEN", owner="HIDDEN")
    failed = next(d for d in deliveries if d.key == "new-email")
    Delivery.objects.filter(pk=failed.pk).update(status=DeliveryStatus.GAVE_UP)
    client = APIClient()
    client.force_authenticate(operator)
    response = client.post(f"/api/v1/deliveries/{failed.pk}/retry/")
    assert response.status_code == 200
    shown = json.dumps(response.json(), ensure_ascii=False)
    assert [fragment for fragment in SENSITIVE if fragment in shown] == []


def test_what_is_sent_is_not_changed_by_reading(viewer, deliveries):
    stored = [Delivery.objects.get(pk=d.pk).payload for d in deliveries]
    protect(name="HIDDEN")
    api_payloads(viewer, deliveries)
    admin_pages(viewer, deliveries)
    assert [Delivery.objects.get(pk=d.pk).payload for d in deliveries] == stored


@pytest.mark.parametrize(
    "rendered",
    [
        "Ops\\Feed [x] -a- {c} & <d> 'e'",  # as typed (plain text, webhook JSON)
        "Ops\\Feed [x] -a- {c} &amp; &lt;d&gt; &#x27;e&#x27;",  # HTML (email)
        "Ops\\Feed [x] -a- {c} &amp; &lt;d&gt; 'e'",  # Slack mrkdwn
        "Ops&#92;Feed \\[x\\] \\-a\\- \\{c\\} & <d> 'e'",  # Jira wiki markup
        "Ops\\Feed [x]\n  -a- {c} & <d> 'e'",  # wrapped by a template
    ],
    ids=["plain", "html", "slack", "jira", "wrapped"],
)
def test_a_value_is_masked_however_a_channel_escaped_it(rendered):
    policy = FieldPolicy("loaders.loader", {"name": "HIDDEN"})
    value = "Ops\\Feed [x] -a- {c} & <d> 'e'"
    shown = policy.redact_rendered({"lines": [f"Service: {rendered}.", 3]}, {"name": [value], "owner": ["Ops"]})
    assert shown == {"lines": [f"Service: {MASK}.", 3]}


def test_a_value_is_masked_only_as_a_whole_word():
    policy = FieldPolicy("loaders.loader", {"owner": "MASKED"})
    shown = policy.redact_rendered(["Ops team", "DevOps", "Opsy", "ops"], {"owner": ["Ops"], "name": ["team"]})
    assert shown == [f"{MASK} team", "DevOps", "Opsy", "ops"]
