"""Voice: the channel kind VOICE, a phone call to each person on call through Twilio's Calls
resource. When the person answers, Twilio fetches what to say from
``/integrations/twilio/voice/<page id>/`` (the page's summary, then "press 1 to acknowledge, 2 to
escalate"), so the page is written before the call starts.

One call per delivery, and at most one call per person per PAGE_MIN_INTERVAL_SECONDS: the others
wait (deferred, no attempt used) for the window, as SMS pages do — a call is not batched, since
one call says one incident."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import ChannelKind, Delivery, Page, PageMethod, Purpose
from integrations.notifications.transports import Permanent, transport_register
from integrations.notifications.transports.sms import (
    PagingTransport,
    base_url,
    deferred_to_window,
    page_code_new,
    page_failure,
    page_targets,
    page_window_take,
    status_callback_url,
)
from oncall.paging import phone_owners
from oncall.providers import ProviderError, call_start


def voice_summary(payload: dict[str, Any]) -> str:
    """What the call says before asking for a key: the incident in one sentence."""
    if payload.get("test"):
        return "This is a test call from ETL Monitor. This channel works."
    headline = payload["headline"].rstrip(": ")
    prefix = f"{headline}. " if headline else ""
    return (
        f"ETL Monitor. {prefix}{payload['severity'].lower()} incident {payload['incident']}, "
        f"{payload['loader']}: {payload['title']}."
    )


def voice_url(page: Page) -> str:
    return f"{base_url()}/integrations/twilio/voice/{page.pk}/"


@transport_register
class VoiceTransport(PagingTransport):
    """A call to each person on call (severities they take by voice), one per person per window."""

    kind = ChannelKind.VOICE
    method = PageMethod.VOICE

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return page_targets("voice", tier)

    def admit(self, deliveries: list[Delivery], now: dt.datetime) -> tuple[list[Delivery], dict[int, Exception]]:
        """Per phone: take its window for the first delivery (a test needs none), hold the others;
        write the page of each call that goes (kept by the delivery: a retry calls with the same page)."""
        admitted: list[Delivery] = []
        held: dict[int, Exception] = {}
        by_phone: dict[str, list[Delivery]] = {}
        for delivery in sorted(deliveries, key=lambda d: d.pk):
            by_phone.setdefault(delivery.target, []).append(delivery)
        owners = phone_owners(set(by_phone))
        for phone, group in by_phone.items():
            going = [d for d in group if d.purpose == Purpose.TEST]
            waiting = [d for d in group if d.purpose != Purpose.TEST]
            with transaction.atomic():
                if waiting:
                    opens_at = page_window_take(self.method, phone, waiting[:1], now)
                    if opens_at is None:
                        going.append(waiting.pop(0))
                        opens_at = now + dt.timedelta(seconds=settings.PAGE_MIN_INTERVAL_SECONDS)
                    held |= {d.pk: deferred_to_window(self.method, phone, opens_at, now) for d in waiting}
                for delivery in going:
                    if delivery.page_id is None:
                        delivery.page = self._page(delivery, phone, owners.get(phone), now)
                        Delivery.objects.filter(pk=delivery.pk).update(page=delivery.page)
            admitted += going
        return admitted, held

    def _page(self, delivery: Delivery, phone: str, user: Any, now: dt.datetime) -> Page:
        test = delivery.purpose == Purpose.TEST
        page = Page.objects.create(
            method=self.method,
            user=user,
            phone=phone,
            code="" if test else page_code_new(phone, now),
            body=voice_summary(delivery.payload),
        )
        if delivery.incident_id:
            page.incidents.add(delivery.incident_id)
        return page

    def send(self, delivery: Delivery) -> str:
        page = delivery.page
        if page is None:
            raise Permanent("a call needs its page: it was not admitted", channel_fault=False)
        try:
            page.provider = "twilio"
            page.external_id = call_start(page.phone, url=voice_url(page), status_callback=status_callback_url())
        except ProviderError as exc:
            raise page_failure(exc, page, page.phone) from exc
        return page.external_id

    def recorded(self, delivery: Delivery, external_id: str) -> None:
        page = delivery.page
        if page is not None:
            Page.objects.filter(pk=page.pk).update(
                provider="twilio", external_id=external_id, status="queued", sent_at=timezone.now()
            )
