"""The SMS channel through the outbox as it runs, with the real Twilio client against a local
server speaking Twilio's REST API: a page per person (the Page recorded with the deliveries SENT),
a wrong number stops that delivery only, Twilio's rate limit fails over to the gateway, a 5xx is
retried, and nobody is texted twice in PAGE_MIN_INTERVAL_SECONDS — the deliveries in between go
in the next page, all of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from incidents.models import EventKind, Incident
from integrations.models import Channel, ChannelKind, Delivery, DeliveryStatus, Page, PageMethod, Purpose
from integrations.notifications.outbox import channel_test, deliveries_send, delivery_queue, delivery_send
from integrations.notifications.transports import transport_for
from integrations.notifications.transports.sms import gsm7, sms_body
from oncall.models import ContactKind, ContactMethod, PagingPreference
from tests.integrations.twilio_fake import (  # noqa: F401 — fixtures
    FakeSmsGateway,
    FakeTwilio,
    sms_gateway_fixture,
    twilio_fixture,
)

ALICE = "+14155550100"
BOB = "+14155550111"


def incident_new(n: int, severity: str = "HIGH") -> Incident:
    now = timezone.now()
    return Incident.objects.create(
        title=f"LOADER-{n} failed",
        severity=severity,
        category="TRANSACTION",
        subject=f"LOADER-{n}",
        fingerprint=f"loader-{n}-failed",
        first_seen=now,
        last_seen=now,
    )


def queued(channel: Channel, incident: Incident, phone: str, purpose: str = Purpose.OPENED) -> Delivery:
    """A delivery in the outbox, its send not yet run (the tests run it with a controlled clock)."""
    with transaction.atomic():
        return delivery_queue(
            incident=incident,
            event=None,
            channel=channel,
            target=phone,
            purpose=purpose,
            key=f"{incident.pk}:{purpose}:{channel.pk}:{phone}",
            enqueue=False,
        )


@pytest.fixture(name="people")
def people_fixture(make_user) -> dict[str, Any]:
    """alice and bob, each with a verified phone."""
    found = {}
    for name, number in (("alice", ALICE), ("bob", BOB)):
        user = make_user(username=name)
        ContactMethod.objects.create(user=user, kind=ContactKind.PHONE, value=number, verified_at=timezone.now())
        found[name] = user
    return found


@pytest.fixture
def sms(twilio: FakeTwilio, people, settings) -> Channel:
    settings.PAGE_MIN_INTERVAL_SECONDS = 60
    settings.ETL_MONITOR_BASE_URL = "https://etl.example.com"
    return Channel.objects.create(name="sms", kind=ChannelKind.SMS)


@pytest.fixture(name="t0")
def t0_fixture() -> dt.datetime:
    """Now, as the outbox's clock starts in these tests (deliveries are due from when they are queued)."""
    return timezone.now() + dt.timedelta(seconds=1)


def state(delivery: Delivery) -> tuple[str, int | None]:
    delivery.refresh_from_db()
    return delivery.status, delivery.page_id


def test_it_texts_the_person_and_records_the_page(sms: Channel, twilio: FakeTwilio, people, t0):
    incident = incident_new(1, "CRITICAL")
    delivery = queued(sms, incident, ALICE)

    delivery_send(delivery.pk, now=t0)

    [message] = twilio.sms_to(ALICE)
    page = Page.objects.get()
    assert message["body"] == (
        f"[CRITICAL] LOADER-1: failed (#{incident.pk}). Reply {page.code} to acknowledge, {page.code} E to escalate. "
        f"https://etl.example.com/admin/incidents/incident/{incident.pk}/change/"
    )
    assert message["status_callback"] == "https://etl.example.com/integrations/twilio/status/"
    assert (page.method, page.user, page.phone, page.body) == (PageMethod.SMS, people["alice"], ALICE, message["body"])
    assert (page.provider, page.external_id, page.status) == ("twilio", message["sid"], "queued")
    assert page.sent_at is not None and len(page.code) == 4 and page.code.isdigit()
    assert list(page.incidents.all()) == [incident]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.page, delivery.external_id) == (DeliveryStatus.SENT, page, message["sid"])
    assert incident.events.filter(kind=EventKind.NOTIFIED, message=f"Opened sent via sms to {ALICE}").exists()


def test_an_invalid_number_stops_that_delivery_and_names_whose_number(sms: Channel, twilio: FakeTwilio, t0):
    twilio.fail(ALICE, "21211")
    incident = incident_new(1)
    delivery = queued(sms, incident, ALICE)

    delivery_send(delivery.pk, now=t0)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.GAVE_UP
    sms.refresh_from_db()
    assert sms.healthy  # the number is wrong, not the channel
    [note] = incident.events.filter(kind=EventKind.NOTIFY_FAILED)
    assert f"the phone {ALICE} (alice) cannot be paged: Twilio 21211: The 'To' number {ALICE} is not" in note.message
    assert not Page.objects.filter(sent_at__isnull=False).exists()


def test_twilios_rate_limit_fails_over_to_the_gateway(sms, twilio: FakeTwilio, sms_gateway: FakeSmsGateway, t0):
    twilio.fail(ALICE, "20429")
    delivery = queued(sms, incident_new(1), ALICE)

    delivery_send(delivery.pk, now=t0)

    [sent] = sms_gateway.sent
    page = Page.objects.get()
    assert (page.provider, page.external_id, page.body) == ("gateway", sent["id"], sent["body"])
    assert state(delivery) == (DeliveryStatus.SENT, page.pk)


def test_a_server_error_is_retried_at_once_not_after_the_window(sms: Channel, twilio: FakeTwilio, t0):
    twilio.fail(ALICE, "20503", times=1)
    delivery = queued(sms, incident_new(1), ALICE)

    delivery_send(delivery.pk, now=t0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "Twilio 20503: Service Unavailable")

    # The retry comes after its backoff, well before the window would open: the failed page's
    # delivery takes the window again.
    delivery_send(delivery.pk, now=max(delivery.next_attempt_at, t0 + dt.timedelta(seconds=1)))

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, len(twilio.sms_to(ALICE))) == (DeliveryStatus.SENT, 2, 1)


def test_a_storm_is_one_text_now_and_one_when_the_window_opens(sms: Channel, twilio: FakeTwilio, t0):
    # 30 incidents within one minute: the first goes at once, the others wait (no attempt used).
    deliveries = []
    for second in range(30):
        deliveries.append(queued(sms, incident_new(second), ALICE))
        delivery_send(deliveries[-1].pk, now=t0 + dt.timedelta(seconds=second))
    assert len(twilio.sms_to(ALICE)) == 1
    waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    assert waiting.count() == 29 and {d.attempts for d in waiting} == {0}
    assert all(d.next_attempt_at > timezone.now() + dt.timedelta(seconds=20) for d in waiting)

    # The window opens: any one of them takes all the others along.
    opens = t0 + dt.timedelta(seconds=60)
    delivery_send(deliveries[17].pk, now=opens)

    first, second = twilio.sms_to(ALICE)
    assert first["body"].startswith("[HIGH] LOADER-0: failed")
    code = Page.objects.get(external_id=second["sid"]).code
    assert second["body"] == (
        f"[HIGH] 29 incidents: LOADER-1, LOADER-2, LOADER-3, LOADER-4, LOADER-5, LOADER-6, +23 more. "
        f"Reply {code} to acknowledge all. https://etl.example.com/admin/"
    )
    assert len(second["body"]) <= 160
    assert Delivery.objects.filter(status=DeliveryStatus.SENT, page__isnull=False).count() == 30
    pages = list(Page.objects.order_by("pk"))
    assert [p.incidents.count() for p in pages] == [1, 29]
    assert len({p.code for p in pages}) == 2

    # Their own tasks, run later, find nothing to do: nobody is texted twice.
    deliveries_send([d.pk for d in deliveries], now=opens + dt.timedelta(seconds=120))
    assert len(twilio.sms_to(ALICE)) == 2


def test_two_phones_do_not_throttle_each_other(sms: Channel, twilio: FakeTwilio, t0):
    first, second = incident_new(1), incident_new(2)
    alice_1, bob_1 = queued(sms, first, ALICE), queued(sms, first, BOB)
    deliveries_send([alice_1.pk, bob_1.pk], now=t0)

    alice_2 = queued(sms, second, ALICE)
    delivery_send(alice_2.pk, now=t0 + dt.timedelta(seconds=5))

    assert (len(twilio.sms_to(ALICE)), len(twilio.sms_to(BOB))) == (1, 1)
    assert state(alice_2)[0] == DeliveryStatus.PENDING
    assert Page.objects.get(phone=BOB).user.username == "bob"


def test_deliveries_claimed_together_go_in_one_text(sms: Channel, twilio: FakeTwilio, t0):
    deliveries = [queued(sms, incident_new(n), ALICE) for n in range(3)]

    deliveries_send([d.pk for d in deliveries], now=t0)

    [message] = twilio.sms_to(ALICE)
    assert message["body"].startswith("[HIGH] 3 incidents: LOADER-0, LOADER-1, LOADER-2. Reply ")
    assert {state(d) for d in deliveries} == {(DeliveryStatus.SENT, Page.objects.get().pk)}


def test_the_batch_leads_with_the_most_severe(sms: Channel, twilio: FakeTwilio, t0):
    deliveries = [queued(sms, incident_new(1, "HIGH"), ALICE), queued(sms, incident_new(2, "CRITICAL"), ALICE)]

    deliveries_send([d.pk for d in deliveries], now=t0)

    assert twilio.sms_to(ALICE)[0]["body"].startswith("[CRITICAL] 2 incidents: LOADER-2, LOADER-1. ")


def test_a_long_title_is_shortened_to_one_segment_of_gsm7(sms: Channel, twilio: FakeTwilio, t0):
    incident = incident_new(1, "CRITICAL")
    incident.title = "LOADER-1 — row count dropped 93 % below the 14-day baseline 😱 in every partition of the run"
    incident.save()

    delivery_send(queued(sms, incident, ALICE).pk, now=t0)

    body = twilio.sms_to(ALICE)[0]["body"]
    assert len(body) <= 160 and body == gsm7(body)
    assert body.startswith("[CRITICAL] LOADER-1: row count dropped") and "... (#" in body


def test_the_texts_read_as_documented():
    one = {"incident": 42, "severity": "CRITICAL", "loader": "PAYMENTS", "title": "run failed", "headline": ""}
    assert sms_body([one | {"url": "<url>"}], "4821") == (
        "[CRITICAL] PAYMENTS: run failed (#42). Reply 4821 to acknowledge, 4821 E to escalate. <url>"
    )
    assert gsm7("Zürich — “naïve” café ☕") == 'Zürich - "naive" café ?'


def test_it_targets_the_people_on_call_its_preferences_allow(sms: Channel, people, t0):
    PagingPreference.objects.create(user=people["bob"], sms_severities=["CRITICAL"])
    transport = transport_for(sms)
    tier = {"people": [people["alice"].pk, people["bob"].pk], "severity": "HIGH", "at": t0}

    assert transport.targets(tier) == [ALICE]
    assert transport.targets({**tier, "severity": "CRITICAL"}) == [ALICE, BOB]
    assert transport.targets({"severity": "HIGH", "at": t0}) == []


def test_a_tier_naming_it_must_name_a_schedule(sms: Channel):
    transport = transport_for(sms)

    assert transport.tier_problems({"channels": ["sms"]}) == {"oncall": "SMS page the people on call: name a schedule."}
    assert transport.tier_problems({"channels": ["sms"], "oncall": ["primary"]}) == {}


def test_it_hears_no_follow_ups(sms: Channel):
    assert transport_for(sms).follow_ups == frozenset()


def test_unconfigured_it_says_which_setting_is_missing(db, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    channel = Channel.objects.create(name="sms", kind=ChannelKind.SMS)

    assert transport_for(channel).configured() == "Twilio is not configured (TWILIO_ACCOUNT_SID is not set)"


def test_the_test_goes_to_the_askers_own_phone_and_spends_no_window(sms: Channel, twilio: FakeTwilio, admin_user):
    ContactMethod.objects.create(user=admin_user, kind=ContactKind.PHONE, value=ALICE + "9", verified_at=timezone.now())
    delivery_send(queued(sms, incident_new(1), ALICE + "9").pk, now=timezone.now())

    delivery = channel_test(user=admin_user, channel=sms)

    assert (delivery.status, delivery.target) == (DeliveryStatus.SENT, ALICE + "9")
    assert twilio.sms_to(ALICE + "9")[1]["body"] == "ETL Monitor test SMS: this channel works."
