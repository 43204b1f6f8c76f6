"""SMS: the channel kind SMS, a text to the phone of each person on call (``oncall.providers``:
Twilio, failing over to the SMS gateway), and the page bookkeeping the voice channel shares.

A person gets at most one SMS per PAGE_MIN_INTERVAL_SECONDS. The first delivery to a phone takes
the phone's window (``PageWindow``, a conditional UPDATE: two workers never both take it) and goes
at once, with every other pending SMS delivery to that phone; the deliveries that come while the
window is closed are deferred (no attempt used) until it opens, and then all go in one page. Each
delivery ends SENT with its ``page`` (one row per SMS: who, which phone, the reply code, the
incidents, the text, the provider and its message id), written in the transaction that records
the deliveries SENT. A storm of 30 incidents is two texts to each person, not 30.

Texts are kept to one SMS segment where possible: 160 characters of the GSM-7 alphabet. A single
character outside it (an em dash, an emoji) makes the whole message UCS-2, 70 characters a
segment, and every segment is billed — so the text is folded to GSM-7 and the title shortened.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import ChannelKind, Delivery, DeliveryStatus, Page, PageMethod, PageWindow, Purpose
from integrations.notifications.payloads import Message
from integrations.notifications.transports import (
    Deferred,
    Permanent,
    Transient,
    Transport,
    deliveries_lease,
    transport_register,
)
from oncall.models import ContactKind, ContactMethod
from oncall.paging import pageable_phones, phone_owners
from oncall.providers import ProviderError, sms_send, twilio_configured

SMS_LIMIT = 160  # one GSM-7 segment
# A reply code stays unique among the pages a phone received this long (what a reply may answer).
PAGE_CODE_VALID = dt.timedelta(hours=24)
SEVERITY_ORDER = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
WINDOW_SPREAD_SECONDS = 3.0

# The GSM 03.38 basic character set, and its extension table (an escape and the character: two septets).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION
_FOLD = {"—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "\t": " "}


def gsm7(text: str) -> str:
    """``text`` in the GSM-7 basic alphabet: dashes and quotes folded, accents dropped where the
    alphabet lacks the letter, anything else (emoji) a ``?``."""
    out = []
    for char in text:
        char = _FOLD.get(char, char)
        if all(c in GSM7 for c in char):
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(base if base and all(c in GSM7 for c in base) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (an extension character takes two)."""
    return len(text) + sum(1 for char in text if char in GSM7_EXTENSION)


def base_url() -> str:
    return settings.ETL_MONITOR_BASE_URL.rstrip("/")


def status_callback_url() -> str:
    """Where Twilio reports each page's progress (delivered, undelivered…)."""
    return f"{base_url()}/integrations/twilio/status/"


def page_payload(message: Message) -> dict[str, Any]:
    """The facts an SMS or a call says about one incident, kept on the delivery (rendered when it
    is queued); the text itself is written when the page goes, with its reply code and whatever
    else the page carries."""
    if message.is_test:
        return {"test": True, "text": message.text}
    ctx = message.context
    incident = message.incident
    assert incident is not None
    loader = incident.loader.loader_code if incident.loader_id else incident.subject
    title = ctx["title"]
    if loader and title.startswith(loader):
        title = title[len(loader) :].lstrip(" :-—") or title
    return {
        "incident": ctx["id"],
        "severity": ctx["severity"],
        "loader": loader,
        "title": title,
        "url": ctx["links"]["incident"],
        "headline": message.headline,
        "text": message.text,
    }


def _fit(make: Any, title: str, limit: int = SMS_LIMIT) -> str:
    """``make(title)``, the title shortened until the text fits ``limit`` (if it can)."""
    text = make(title)
    while gsm7_length(text) > limit and title:
        title = title[: max(0, len(title) - (gsm7_length(text) - limit) - 3)].rstrip()
        text = make(f"{title}..." if title else "")
    return text


def sms_body(payloads: list[dict[str, Any]], code: str) -> str:
    """The text of one page: one incident with how to acknowledge and escalate it, or a batch
    (the most severe first, a few loaders named) acknowledged all at once."""
    if any(p.get("test") for p in payloads):
        return "ETL Monitor test SMS: this channel works."
    incidents = list({p["incident"]: p for p in payloads}.values())
    severity = min((p["severity"] for p in incidents), key=_severity_rank)
    if len(incidents) == 1:
        p = incidents[0]
        head = gsm7(f"{p['headline']}[{p['severity']}] {p['loader']}: ")
        tail = f" (#{p['incident']}). Reply {code} to acknowledge, {code} E to escalate. {p['url']}"
        return _fit(lambda title: f"{head}{title}{tail}", gsm7(p["title"]))
    named: list[str] = []
    for p in sorted(incidents, key=lambda p: (_severity_rank(p["severity"]), p["incident"])):
        if p["loader"] not in named:
            named.append(p["loader"])
    count = len(incidents)

    def text(shown: list[str]) -> str:
        rest = sum(1 for p in incidents if p["loader"] not in shown)
        names = ", ".join(shown + ([f"+{rest} more"] if rest else []))
        return gsm7(f"[{severity}] {count} incidents: {names}. Reply {code} to acknowledge all. {base_url()}/admin/")

    shown = named[:1]
    for loader in named[1:]:
        if gsm7_length(text([*shown, loader])) > SMS_LIMIT:
            break
        shown.append(loader)
    return text(shown)


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def page_window_take(method: str, phone: str, deliveries: list[Delivery], now: dt.datetime) -> dt.datetime | None:
    """Take the phone's window for ``method`` and a page of ``deliveries`` (in the caller's
    transaction): None when taken — the caller pages now, and the next page waits
    PAGE_MIN_INTERVAL_SECONDS — else when it opens.

    A conditional UPDATE: on PostgreSQL a second worker's UPDATE waits for the first one's row
    lock, then finds the window closed; SQLite runs one writer at a time. A window whose page
    failed is taken again by that page's retry (its first delivery, the holder, is among these)."""
    PageWindow.objects.get_or_create(method=method, phone=phone, defaults={"opens_at": now})
    interval = dt.timedelta(seconds=settings.PAGE_MIN_INTERVAL_SECONDS)
    pks = [d.pk for d in deliveries]
    taken = (
        PageWindow.objects.filter(method=method, phone=phone)
        .filter(Q(opens_at__lte=now) | Q(holder__in=pks))
        .update(opens_at=now + interval, holder=min(pks))
    )
    if taken:
        return None
    return PageWindow.objects.values_list("opens_at", flat=True).get(method=method, phone=phone)


def page_code_new(phone: str, now: dt.datetime) -> str:
    """A 4-digit reply code no page to this phone used in the last PAGE_CODE_VALID."""
    used = set(Page.objects.filter(phone=phone, created_at__gte=now - PAGE_CODE_VALID).values_list("code", flat=True))
    while True:
        code = f"{1000 + secrets.randbelow(9000)}"
        if code not in used:
            return code


def deferred_to_window(method: str, phone: str, opens_at: dt.datetime, now: dt.datetime) -> Deferred:
    """Wait for the window. The waiting deliveries' tasks are spread over WINDOW_SPREAD_SECONDS
    after it opens: the first takes the others along, and finds them pending rather than in the
    hands of a worker that started at the same instant (which would hold them for one more window)."""
    noun = "SMS" if method == PageMethod.SMS else "call"
    spread = random.uniform(0, WINDOW_SPREAD_SECONDS)
    return Deferred(
        f"one {noun} per {settings.PAGE_MIN_INTERVAL_SECONDS} s to {phone}: goes with the next page",
        retry_after=max(0.0, (opens_at - now).total_seconds()) + spread,
    )


def page_failure(exc: ProviderError, page: Page | None, phone: str) -> Exception:
    """What the outbox does with a provider's refusal: a wrong number stops this delivery (the
    channel is fine: the timeline names whose number), refused credentials mark the channel
    unhealthy, anything else is tried again."""
    if exc.permanent:
        who = page.user.get_username() if page is not None and page.user is not None else "nobody verified"
        return Permanent(f"the phone {phone} ({who}) cannot be paged: {exc.reason}", channel_fault=False)
    if exc.misconfigured:
        return Permanent(exc.reason)
    return Transient(exc.reason, retry_after=exc.retry_after, rate_limited=exc.rate_limited)


def page_targets(kind_method: str, tier: dict[str, Any]) -> list[str]:
    """The phones of the tier's people on call whom ``kind_method`` ("sms", "voice") may page now."""
    at = tier.get("at") or timezone.now()
    phones = pageable_phones(tier.get("people") or [], kind_method, tier.get("severity") or "", at)
    return sorted(set(phones.values()))


def own_phone(user: Any) -> str:
    """The person's first verified phone ("" = none): where their test page goes."""
    if user is None or not getattr(user, "pk", None):
        return ""
    phone = (
        ContactMethod.objects.filter(user=user, kind=ContactKind.PHONE, verified_at__isnull=False)
        .order_by("verified_at", "pk")
        .values_list("value", flat=True)
        .first()
    )
    return phone or ""


class PagingTransport(Transport):
    """What SMS and voice share: Twilio's settings, the people on call as targets, a test to one's
    own phone, nothing but first messages (a page wakes someone: a resolution needs no action, and
    it would spend the person's one page of the window, delaying a real one). No reminders either:
    an incident nobody acknowledges pages again by escalation, tier by tier."""

    method: str  # PageMethod
    follow_ups = frozenset()
    reminders = False
    test_target_missing = "Verify a phone number in your contact methods: a test page goes to your own phone."

    def configured(self) -> str | None:
        return twilio_configured()

    def tier_problems(self, tier: dict[str, Any]) -> dict[str, str]:
        if tier.get("oncall"):
            return {}
        noun = "SMS" if self.method == PageMethod.SMS else "Voice calls"
        return {"oncall": f"{noun} page the people on call: name a schedule."}

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return own_phone(user)

    def render(self, message: Message) -> dict[str, Any]:
        return page_payload(message)


@transport_register
class SmsTransport(PagingTransport):
    """An SMS to each person on call; at most one per person per PAGE_MIN_INTERVAL_SECONDS, the
    deliveries in between batched into the next one."""

    kind = ChannelKind.SMS
    method = PageMethod.SMS

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return page_targets("sms", tier)

    def admit(self, deliveries: list[Delivery], now: dt.datetime) -> tuple[list[Delivery], dict[int, Exception]]:
        """Per phone: take its window, or hold its deliveries until it opens. Taking it, take in
        the phone's other pending SMS deliveries (deferred ones included): they all go in this page."""
        admitted: list[Delivery] = []
        held: dict[int, Exception] = {}
        by_phone: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_phone.setdefault(delivery.target, []).append(delivery)
        owners = phone_owners(set(by_phone))
        for phone, group in by_phone.items():
            tests = [d for d in group if d.purpose == Purpose.TEST]
            for delivery in tests:  # a test goes alone and spends no window
                delivery.page = Page(method=self.method, user=owners.get(phone), phone=phone)
                delivery.page.body = sms_body([delivery.payload], "")
                admitted.append(delivery)
            group = [d for d in group if d.purpose != Purpose.TEST]
            if not group:
                continue
            with transaction.atomic():
                opens_at = page_window_take(self.method, phone, group, now)
                if opens_at is not None:
                    held |= {d.pk: deferred_to_window(self.method, phone, opens_at, now) for d in group}
                    continue
                group += self._take_in(phone, {d.pk for d in deliveries}, now)
                code = page_code_new(phone, now)
            page = Page(method=self.method, user=owners.get(phone), phone=phone, code=code)
            page.body = sms_body([d.payload for d in group], code)
            for delivery in group:
                delivery.page = page
            admitted += group
        return admitted, held

    def _take_in(self, phone: str, claimed: set[int], now: dt.datetime) -> list[Delivery]:
        """The phone's other SMS deliveries waiting (not yet due, deferred, failed), claimed as the
        outbox claims (SENDING with a lease, one attempt); those another worker holds are skipped."""
        waiting = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel", "root")
            .filter(channel__kind=self.kind, target=phone, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED])
            .exclude(purpose=Purpose.TEST)
            .exclude(pk__in=claimed)
            .filter(Q(root__isnull=True) | Q(root__status=DeliveryStatus.SENT))
            .order_by("pk")
        )
        if not waiting:
            return []
        deliveries_lease(waiting, now)
        return waiting

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """One SMS per page (the deliveries ``admit`` gave one page share it), pages in parallel."""
        pages: dict[int, tuple[Page, list[Delivery]]] = {}
        for delivery in deliveries:
            page = delivery.page
            pages.setdefault(id(page), (page, []))[1].append(delivery)

        def send(page: Page) -> str | Exception:
            try:
                page.provider, page.external_id = sms_send(page.phone, page.body, status_callback=status_callback_url())
            except ProviderError as exc:
                return page_failure(exc, page, page.phone)
            return page.external_id

        batches = list(pages.values())
        with ThreadPoolExecutor(max_workers=max(1, min(len(batches), settings.NOTIFY_SEND_THREADS))) as pool:
            outcomes = list(pool.map(lambda batch: send(batch[0]), batches))
        return {d.pk: outcome for (_page, group), outcome in zip(batches, outcomes, strict=True) for d in group}

    def send(self, delivery: Delivery) -> str:
        outcome = self.send_many([delivery])[delivery.pk]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def recorded(self, delivery: Delivery, external_id: str) -> None:
        page_record(delivery)


def page_record(delivery: Delivery) -> None:
    """In the transaction recording ``delivery`` SENT: its page written (once, by the first of the
    page's deliveries), the incident added to it, the delivery pointing at it."""
    page = delivery.page
    if page is None:
        return
    if page.pk is None:
        page.sent_at, page.status = timezone.now(), "queued"  # accepted by the provider
        page.save()
    if delivery.incident_id:
        page.incidents.add(delivery.incident_id)
    Delivery.objects.filter(pk=delivery.pk).update(page=page)
