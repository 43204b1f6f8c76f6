"""The voice channel through the outbox, with the real Twilio client against a local server
speaking Twilio's Calls resource: one call per delivery, its page written first (Twilio fetches
what to say from the page's URL), one call per person per PAGE_MIN_INTERVAL_SECONDS."""

from __future__ import annotations

import datetime as dt

import pytest

from integrations.models import Channel, ChannelKind, DeliveryStatus, Page, PageMethod
from integrations.notifications.outbox import delivery_send
from integrations.notifications.transports import transport_for
from oncall.models import PagingPreference
from tests.integrations.test_sms import (  # noqa: F401 — fixtures
    ALICE,
    BOB,
    incident_new,
    people_fixture,
    queued,
    t0_fixture,
)
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixtures


@pytest.fixture
def voice(twilio: FakeTwilio, people, settings) -> Channel:
    settings.PAGE_MIN_INTERVAL_SECONDS = 60
    settings.ETL_MONITOR_BASE_URL = "https://etl.example.com"
    return Channel.objects.create(name="voice", kind=ChannelKind.VOICE)


def test_it_calls_with_the_pages_url(voice: Channel, twilio: FakeTwilio, people, t0):
    incident = incident_new(1, "CRITICAL")
    delivery = queued(voice, incident, ALICE)

    delivery_send(delivery.pk, now=t0)

    [call] = twilio.calls_to(ALICE)
    page = Page.objects.get()
    assert call["url"] == f"https://etl.example.com/integrations/twilio/voice/{page.pk}/"
    assert call["status_callback"] == "https://etl.example.com/integrations/twilio/status/"
    assert (page.method, page.user, page.phone, page.external_id) == (
        PageMethod.VOICE,
        people["alice"],
        ALICE,
        call["sid"],
    )
    assert page.body == f"ETL Monitor. critical incident {incident.pk}, LOADER-1: failed."
    assert list(page.incidents.all()) == [incident] and page.sent_at is not None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.page, delivery.external_id) == (DeliveryStatus.SENT, page, call["sid"])


def test_one_call_per_person_per_window_each_incident_its_own_call(voice: Channel, twilio: FakeTwilio, t0):
    first = queued(voice, incident_new(1, "CRITICAL"), ALICE)
    delivery_send(first.pk, now=t0)
    second = queued(voice, incident_new(2, "CRITICAL"), ALICE)
    delivery_send(second.pk, now=t0 + dt.timedelta(seconds=10))

    second.refresh_from_db()
    assert (second.status, second.attempts, len(twilio.calls_to(ALICE))) == (DeliveryStatus.PENDING, 0, 1)

    delivery_send(second.pk, now=max(second.next_attempt_at, t0 + dt.timedelta(seconds=60)))

    assert len(twilio.calls_to(ALICE)) == 2
    assert [p.incidents.count() for p in Page.objects.all()] == [1, 1]


def test_a_rate_limit_is_retried_with_the_same_page(voice: Channel, twilio: FakeTwilio, t0):
    twilio.fail(ALICE, "20429", times=1)
    delivery = queued(voice, incident_new(1, "CRITICAL"), ALICE)

    delivery_send(delivery.pk, now=t0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.rate_limited_attempts) == (DeliveryStatus.FAILED, 1)
    page = delivery.page

    delivery_send(delivery.pk, now=max(delivery.next_attempt_at, t0 + dt.timedelta(seconds=1)))

    delivery.refresh_from_db()
    [call] = twilio.calls_to(ALICE)
    assert (delivery.status, delivery.page) == (DeliveryStatus.SENT, page)
    assert Page.objects.count() == 1 and call["url"].endswith(f"/voice/{page.pk}/")


def test_refused_credentials_mark_the_channel_unhealthy(voice: Channel, twilio: FakeTwilio, settings, t0):
    settings.TWILIO_AUTH_TOKEN = "wrong"
    delivery = queued(voice, incident_new(1, "CRITICAL"), ALICE)

    delivery_send(delivery.pk, now=t0)

    delivery.refresh_from_db()
    voice.refresh_from_db()
    assert delivery.status == DeliveryStatus.GAVE_UP and "Twilio 20003" in delivery.last_error
    assert not voice.healthy


def test_it_calls_only_those_taking_calls_for_the_severity(voice: Channel, people, t0):
    PagingPreference.objects.create(user=people["bob"], voice_severities=["CRITICAL", "HIGH"])
    tier = {"people": [people["alice"].pk, people["bob"].pk], "severity": "HIGH", "at": t0}

    assert transport_for(voice).targets(tier) == [BOB]
    assert transport_for(voice).targets({**tier, "severity": "CRITICAL"}) == [ALICE, BOB]


def test_a_tier_naming_it_must_name_a_schedule(voice: Channel):
    assert transport_for(voice).tier_problems({"channels": ["voice"]}) == {
        "oncall": "Voice calls page the people on call: name a schedule."
    }


def test_unconfigured_it_says_which_setting_is_missing(db, settings):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "", "+15005550006"
    channel = Channel.objects.create(name="voice", kind=ChannelKind.VOICE)

    assert transport_for(channel).configured() == "Twilio is not configured (TWILIO_AUTH_TOKEN is not set)"
