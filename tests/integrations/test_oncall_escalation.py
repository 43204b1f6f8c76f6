"""The on-call escalation scenario of issue #20, on a controlled clock, every part real but the
vendors (the real Twilio and Slack clients against local fakes speaking their wire formats):

CRITICAL opens → a Slack message and an SMS to the person on call → nobody acknowledges within
5 minutes → a voice call → the person presses 1 → acknowledged, the Slack message updated in
place, escalation stopped, and the timeline has every step.

Celery is eager; each step runs in ``django_capture_on_commit_callbacks(execute=True)``, so what
a step queues is sent as a worker sends it after the commit."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from incidents.models import EventKind, IncidentStatus
from integrations.models import Channel, ChannelKind, IncidentNotification, NotificationRule, Page, PageMethod
from integrations.notifications.routing import escalations_run
from oncall.models import ContactKind, ContactMethod, Rotation, RotationMember, Schedule
from tests.integrations.conftest import ROUTING_T0 as T0
from tests.integrations.slack_requests import slack_app_serving
from tests.integrations.twilio_fake import AUTH_TOKEN, FakeTwilio, twilio_fixture  # noqa: F401 — fixture

BASE = "https://etl.example.com"
ALICE_PHONE = "+14155550100"
S = dt.timedelta(seconds=1)


@pytest.fixture
def slack_app(settings):
    with slack_app_serving(settings) as slack:
        yield slack


@pytest.fixture
def alice(make_user):
    """On call in data-platform (the only person of its daily rotation), phone verified, Slack linked."""
    alice = make_user("Operator", username="alice", email="alice@example.com")
    ContactMethod.objects.create(user=alice, kind=ContactKind.PHONE, value=ALICE_PHONE, verified_at=timezone.now())
    ContactMethod.objects.create(user=alice, kind=ContactKind.SLACK, value="U0ALICE", verified_at=timezone.now())
    schedule = Schedule.objects.create(name="Data platform", slug="data-platform", timezone="Europe/Paris")
    rotation = Rotation.objects.create(
        schedule=schedule,
        name="Primary",
        handoff="DAILY",
        handoff_time=dt.time(9),
        start_date=T0.date() - dt.timedelta(days=7),
    )
    RotationMember.objects.create(rotation=rotation, user=alice, position=0)
    return alice


@pytest.fixture
def paging(settings, twilio: FakeTwilio, slack_app, alice):
    """CRITICAL: Slack #alerts-critical and an SMS to the person on call; 5 minutes later, a call."""
    settings.ETL_MONITOR_BASE_URL = BASE
    settings.PAGE_MIN_INTERVAL_SECONDS = 60
    Channel.objects.create(name="sms", kind=ChannelKind.SMS)
    Channel.objects.create(name="voice", kind=ChannelKind.VOICE)
    NotificationRule.objects.filter(severity="CRITICAL", team=None, tag=None).update(
        channels=["slack", "sms"],
        recipients=[],
        slack_channel="#alerts-critical",
        oncall=["data-platform"],
        escalation_timeout=300,
        escalation_tiers=[{"channels": ["voice"], "oncall": ["data-platform"]}],
        escalation_repeat=0,
    )
    return twilio


def twilio_post(url: str, params: dict[str, str]) -> ET.Element:
    """POST as Twilio does to one of our webhooks (``url`` absolute, as Twilio was given it), signed."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    response = Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert response.status_code == 200, response.content
    return ET.fromstring(response.content)


def test_critical_pages_slack_and_sms_then_calls_and_a_key_press_acknowledges(
    fire, paging: FakeTwilio, slack_app, alice, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks

    # 1. CRITICAL opens: the Slack message and the SMS to alice, who is on call.
    with capture(execute=True):
        incident = fire("CRITICAL", at=T0)
    [post] = slack_app.posts()
    assert post["channel"] == "C0CRIT"
    [sms] = paging.sms_to(ALICE_PHONE)
    sms_page = Page.objects.get(method=PageMethod.SMS)
    assert f"Reply {sms_page.code} to acknowledge" in sms["body"] and f"#{incident.pk}" in sms["body"]
    assert paging.calls_to(ALICE_PHONE) == []

    # 2. Nobody acknowledges for 5 minutes: tier 1, a call to whoever is on call.
    assert escalations_run(now=T0 + 299 * S) == 0
    with capture(execute=True):
        assert escalations_run(now=T0 + 300 * S) == 1
    [call] = paging.calls_to(ALICE_PHONE)
    voice_page = Page.objects.get(method=PageMethod.VOICE)
    assert call["url"] == f"{BASE}/integrations/twilio/voice/{voice_page.pk}/"
    assert list(voice_page.incidents.all()) == [incident] and voice_page.user == alice

    # 3. alice answers: Twilio fetches the TwiML, she hears the incident and presses 1.
    call_params = {"CallSid": call["sid"], "AccountSid": paging.account_sid, "From": call["from"], "To": ALICE_PHONE}
    twiml = twilio_post(call["url"], {**call_params, "CallStatus": "in-progress"})
    gather = twiml.find("Gather")
    assert gather is not None and gather.get("numDigits") == "1"
    spoken = " ".join(element.text or "" for element in twiml.iter("Say"))
    assert "press 1 to acknowledge" in spoken.lower() and "2 to escalate" in spoken.lower()
    with capture(execute=True):
        answer = twilio_post(gather.get("action"), {**call_params, "CallStatus": "in-progress", "Digits": "1"})
    assert "acknowledged" in " ".join(element.text or "" for element in answer.iter("Say")).lower()

    # 4. Acknowledged by alice from the call; the Slack message updated in place; escalation stopped.
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by == alice
    assert incident.events.get(kind=EventKind.ACKNOWLEDGED).data == {"source": "voice"}
    [update] = slack_app.calls_to("chat.update")
    assert (update.body["channel"], update.body["ts"]) == ("C0CRIT", post["ts"])
    [post] = slack_app.posts()
    assert "Acknowledged by alice" in json.dumps(post["blocks"], ensure_ascii=False)
    assert IncidentNotification.objects.get(incident=incident).next_escalation_at is None
    with capture(execute=True):
        assert escalations_run(now=T0 + 3600 * S) == 0
    assert len(paging.calls_to(ALICE_PHONE)) == 1 and len(paging.sms_to(ALICE_PHONE)) == 1

    # 5. The timeline tells it all, in order.
    timeline = [(e.kind, e.message) for e in incident.events.order_by("at", "pk")]
    kinds = [kind for kind, _ in timeline]
    assert kinds[0] == EventKind.OPENED
    notified = [message for kind, message in timeline if kind == EventKind.NOTIFIED]
    assert any("slack" in m and "#alerts-critical" in m for m in notified)
    assert any("sms" in m and ALICE_PHONE in m for m in notified)
    assert any("voice" in m and ALICE_PHONE in m for m in notified)
    assert ("ESCALATED", "Not acknowledged within 300 s: tier 1 notified.") in timeline
    order = [kinds.index(EventKind.OPENED), kinds.index(EventKind.ESCALATED), kinds.index(EventKind.ACKNOWLEDGED)]
    assert order == sorted(order)
