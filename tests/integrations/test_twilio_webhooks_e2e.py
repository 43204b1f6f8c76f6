"""A page's whole round trip: the outbox texts (or calls) the person through the real SMS and voice
transports and Twilio client to the fake Twilio; the person answers the way Twilio then reports it
to us (the reply's code taken from the text Twilio was given, the call's URL from the call it
started, the status callback as the fake signs it)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User

from etl_monitor.roles import Role
from incidents.models import EventKind
from integrations.models import Channel, ChannelKind, Page
from integrations.notifications.outbox import delivery_send
from tests.integrations import test_sms
from tests.integrations.test_sms import ALICE, incident_new, queued
from tests.integrations.test_twilio_webhooks import BASE, said, signed_post, sms_params, voice_params
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixture

# The SMS channel tests' fixtures: alice and bob with verified phones; the outbox's clock.
people = test_sms.people_fixture
t0 = test_sms.t0_fixture


@pytest.fixture
def alice(people):
    """alice, paged on her verified phone, is an Operator (she may acknowledge)."""
    people["alice"].groups.add(Group.objects.get(name=Role.OPERATOR))
    return User.objects.get(pk=people["alice"].pk)  # her permissions read afresh


@pytest.fixture
def channels(db, twilio: FakeTwilio, settings) -> dict[str, Channel]:
    settings.ETL_MONITOR_BASE_URL = BASE
    settings.PAGE_MIN_INTERVAL_SECONDS = 60
    return {
        "sms": Channel.objects.create(name="sms", kind=ChannelKind.SMS),
        "voice": Channel.objects.create(name="voice", kind=ChannelKind.VOICE),
    }


def test_a_texted_page_is_acknowledged_by_replying_its_code(channels, twilio, alice, t0):
    incident = incident_new(1, "CRITICAL")
    delivery_send(queued(channels["sms"], incident, ALICE).pk, now=t0)
    [text] = twilio.sms_to(ALICE)
    code = re.search(r"Reply (\d{4}) to acknowledge", text["body"]).group(1)

    [answer] = said(signed_post("/integrations/twilio/sms/", sms_params(code, sender=ALICE)))

    assert answer == f"Acknowledged #{incident.pk} {incident.title}."
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("ACKNOWLEDGED", alice)
    assert Page.objects.get().answered_at is not None


def test_twilio_reporting_the_text_undelivered_puts_it_on_the_timeline(channels, twilio, alice, t0):
    incident = incident_new(1, "CRITICAL")
    delivery_send(queued(channels["sms"], incident, ALICE).pk, now=t0)
    [text] = twilio.sms_to(ALICE)

    url, params, signature = twilio.status_callback_request(text["sid"], "undelivered", error_code="30003")
    assert signed_post(urlsplit(url).path, params, signature=signature).status_code == 200

    [failed] = incident.events.filter(kind=EventKind.NOTIFY_FAILED)
    assert failed.message == "SMS to alice undelivered: 30003 unreachable destination handset"
    assert (Page.objects.get().status, Page.objects.get().error_code) == ("undelivered", "30003")


def test_a_call_is_answered_and_key_1_acknowledges(channels, twilio, alice, t0):
    incident = incident_new(1, "CRITICAL")
    delivery_send(queued(channels["voice"], incident, ALICE).pk, now=t0)
    [call] = twilio.calls_to(ALICE)

    answered = ET.fromstring(signed_post(urlsplit(call["url"]).path, voice_params()).content)
    action = answered.find("Gather").get("action")
    assert incident.title in answered.find("Gather/Say").text
    path = urlsplit(action).path + "?" + urlsplit(action).query
    [speech] = said(signed_post(path, voice_params("1")), "Say")

    assert speech == f"Acknowledged #{incident.pk} {incident.title}. Goodbye."
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("ACKNOWLEDGED", alice)
