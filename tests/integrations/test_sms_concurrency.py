"""Two workers sending SMS deliveries to the same phone at the same moment, on PostgreSQL (row
locks and a conditional UPDATE on the phone's window): still one text per window, every delivery
sent exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.utils import timezone

from integrations.models import Channel, ChannelKind, Delivery, DeliveryStatus, Page
from integrations.notifications.outbox import deliveries_send
from oncall.models import ContactKind, ContactMethod
from tests.conftest import at_once
from tests.integrations.test_sms import ALICE, incident_new, queued
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixtures

WORKERS = 4


@pytest.fixture
def storm(require_postgres, twilio: FakeTwilio, make_user, settings) -> list[int]:
    """24 SMS deliveries to alice, due, not yet sent; Twilio slow enough that the winner is still
    sending while the other workers arrive."""
    settings.PAGE_MIN_INTERVAL_SECONDS = 60
    twilio.latency = 0.2
    alice = make_user(username="alice")
    ContactMethod.objects.create(user=alice, kind=ContactKind.PHONE, value=ALICE, verified_at=timezone.now())
    sms = Channel.objects.create(name="sms", kind=ChannelKind.SMS)
    return [queued(sms, incident_new(n), ALICE).pk for n in range(24)]


def shares(ids: list[int], split: bool) -> Iterator[list[int]]:
    """Each worker's deliveries: a share of their own, or all of them (racing for the same rows)."""
    return iter([ids[i::WORKERS] for i in range(WORKERS)] if split else [ids] * WORKERS)


def assert_each_sent_once(twilio: FakeTwilio) -> list[Page]:
    assert Delivery.objects.filter(status=DeliveryStatus.SENT, page__isnull=False).count() == 24
    assert not Delivery.objects.filter(attempts__gt=1).exists()
    pages = list(Page.objects.prefetch_related("incidents"))
    assert sum(len(p.incidents.all()) for p in pages) == 24
    assert {p.external_id for p in pages} == {m["sid"] for m in twilio.sms_to(ALICE)}
    return pages


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("split", [True, False], ids=["own-deliveries", "same-deliveries"])
def test_racing_workers_send_one_text_then_the_rest_in_one_more(storm, twilio: FakeTwilio, split):
    now = timezone.now() + dt.timedelta(seconds=1)
    share = shares(storm, split)

    at_once(lambda: deliveries_send(next(share), now=now), WORKERS)

    assert len(twilio.sms_to(ALICE)) == 1
    # Those another worker held wait (all of them go at once when one worker claimed every row).
    waiting = list(Delivery.objects.filter(status=DeliveryStatus.PENDING).order_by("next_attempt_at"))
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 24 - len(waiting)
    assert split or not waiting
    # The window opens: the waiting deliveries' tasks run when they are due (spread a little),
    # the first takes the others along.
    for delivery in waiting:
        deliveries_send([delivery.pk], now=max(delivery.next_attempt_at, now + dt.timedelta(seconds=60)))
    assert len(twilio.sms_to(ALICE)) == (2 if waiting else 1)
    assert_each_sent_once(twilio)


@pytest.mark.django_db(transaction=True)
def test_workers_racing_at_every_window_still_send_one_text_per_window(storm, twilio: FakeTwilio):
    now = timezone.now() + dt.timedelta(seconds=1)

    at_once(lambda: deliveries_send(storm, now=now), WORKERS)
    assert len(twilio.sms_to(ALICE)) == 1
    for window in range(1, 6):
        if not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists():
            break
        opens = now + dt.timedelta(seconds=65 * window)
        at_once(lambda opens=opens: deliveries_send(storm, now=opens), WORKERS)
        assert len(twilio.sms_to(ALICE)) == window + 1  # one text each time the window opens

    assert_each_sent_once(twilio)
