"""Transports: one class per channel kind, one interface, one module each.

A ``Transport`` is bound to one channel (``transport_for(channel)``) and answers everything the
rest of the wing asks about a channel of its kind: whether it can send (``configured``), what
its settings lack (``check``), whom a notification rule's tier makes it tell (``targets``,
``tier_problems``), where a test goes (``test_target``), what a message looks like in its
medium (``render``) and how it is sent (``send``). Routing, the outbox, the channel services,
the admin and the API ask the transport; none of them names a channel kind.

``send(delivery) -> external_id`` sends one delivery and returns what identifies the
message at the receiver (Slack ``channel:ts``, the email Message-ID, the webhook
delivery id). It raises ``Transient`` (try again later, optionally after
``retry_after`` seconds) or ``Permanent`` (stop: the channel is misconfigured). The
client never retries by itself: the outbox is the only place that retries (it knows what
was sent). ``find(delivery)`` looks for a message an earlier attempt may have sent (the
outcome was unknown: a worker killed mid-send); transports that cannot tell return None.

Adding a channel is one module plus its tests. The module, in this package (every module
here is loaded when the app is ready) or in an integration of its own that the app loads
(``integrations.jira``), provides:

- a ``Transport`` subclass decorated with ``@transport_register``, whose ``kind`` is the
  channel's ``ChannelKind`` value (add the value to ``integrations.models.ChannelKind``:
  a choice of ``Channel.kind``, so ``makemigrations`` records it);
- ``targets(tier)``, ``render(message)`` and ``send(delivery)`` — the three every channel has;
- where they differ from the defaults below: ``configured()``, ``check()``,
  ``tier_problems(tier)``, ``test_target(user, tiers)``, ``prepare()``, ``admit()``, ``send_many()``,
  ``find()``, ``recorded()``, and the class attributes (``can_update``, ``can_find``, ``unrouted``,
  ``follow_ups``, ``reminders``, ``test_prompt``, ``test_target_missing``, ``uses_admin_mail``);
- and its tests: the real client against a local server (``tests/integrations/``).
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from django.conf import settings
from django.db.models import F

from integrations.models import Channel, Delivery, DeliveryStatus, Purpose
from integrations.notifications.payloads import Message


class Transient(Exception):
    """Try again later. ``rate_limited``: the receiver asked us to slow down (HTTP 429) — such
    failures get a larger attempt budget (NOTIFY_MAX_ATTEMPTS_RATE_LIMITED)."""

    def __init__(self, reason: str, retry_after: float | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class Deferred(Transient):
    """Not tried at all (the receiver asked us to slow down): try later without using an attempt."""


class Permanent(Exception):
    """Retrying will not help. ``channel_fault``: the channel is misconfigured (mark it unhealthy,
    tell the admins) — False when only this message is wrong (e.g. nothing left to update)."""

    def __init__(self, reason: str, *, channel_fault: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.channel_fault = channel_fault


class Transport:
    """One channel kind. An instance is bound to one channel (``self.channel``)."""

    kind: ClassVar[str]
    can_update: ClassVar[bool] = False  # edits its first message in place (Slack bot)
    can_find: ClassVar[bool] = False  # can tell whether an earlier attempt's message arrived
    # Why notification rules do not route to this kind ("" = they do): Jira tickets follow the Jira settings.
    unrouted: ClassVar[str] = ""
    # The follow-ups (acknowledged, resolved, closed) told to whoever this channel told about an
    # incident; reminders go to all of them.
    follow_ups: ClassVar[frozenset[str]] = frozenset({Purpose.RESOLVED})
    # Whether it hears the "still firing" reminders (a rule's repeat_interval) about what it told.
    reminders: ClassVar[bool] = True
    # What the admin's test box asks for ("" = no box: a test goes where the channel points).
    test_prompt: ClassVar[str] = ""
    # Why a test has nowhere to go, when ``test_target`` finds no target and nobody gave one.
    test_target_missing: ClassVar[str] = "Say where to send the test."
    # The admins hear of a broken channel by email (Django's EMAIL_* settings): a channel that
    # sends through those very settings keeps quiet about itself.
    uses_admin_mail: ClassVar[bool] = False

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def configured(self) -> str | None:
        """Why the channel cannot send beyond being disabled (a missing token…), or None."""
        return None

    def check(self) -> dict[str, list[str]]:
        """What the channel's settings lack, by field: ``channel_save`` refuses to save it so."""
        return {}

    def targets(self, tier: dict[str, Any]) -> list[str]:
        """Where one tier of a notification rule (``channels``, ``recipients``, ``slack_channel``)
        makes this channel send: one delivery per target, none when the tier names nobody."""
        raise NotImplementedError

    def tier_problems(self, tier: dict[str, Any]) -> dict[str, str]:
        """What a tier naming this channel lacks for it to tell anyone, by the tier's field."""
        return {}

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        """Where a test goes when nobody says ("" = nowhere known). ``user``: who asks (None when
        unknown); ``tiers``: the rules' tiers naming this channel, least severe rule first."""
        return ""

    def render(self, message: Message) -> dict[str, Any]:
        """The payload of one delivery, rendered once when it is queued: the incident's facts as
        they were at the event. What the channel's configuration decides (its URL, token, secret;
        Jira's project and fields) is not in it: ``send`` takes it as it is at each attempt."""
        raise NotImplementedError

    def send(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """Send several deliveries of one channel: pk → external id, or the exception raised.
        HTTP transports send them in parallel (the calls touch no database)."""
        if len(deliveries) == 1:
            return {deliveries[0].pk: send_outcome(self.send, deliveries[0])}
        with ThreadPoolExecutor(max_workers=min(len(deliveries), settings.NOTIFY_SEND_THREADS)) as pool:
            return dict(
                zip([d.pk for d in deliveries], pool.map(lambda d: send_outcome(self.send, d), deliveries), strict=True)
            )

    def prepare(self) -> None:
        """Read what sending needs from the database, before sending (the outbox calls it in its
        own thread; ``send`` and ``send_many`` may run in others, which touch no database). The
        channel row itself is read fresh for every attempt; a transport that sends by other
        settings (Jira's) reads them here, so a retry after a fix uses the fixed ones."""

    def admit(self, deliveries: list[Delivery], now: dt.datetime) -> tuple[list[Delivery], dict[int, Exception]]:
        """Which of the claimed ``deliveries`` go now: called by the outbox in its own thread (the
        database may be read and written) after ``prepare``, before sending. Returns the deliveries
        to send — these, fewer, or more: a transport that batches may take in other pending
        deliveries of its kind, claimed by itself (SENDING, with a lease) — and the outcome of each
        one held back (``Deferred``: not yet, no attempt used). A per-person rate limit lives here."""
        return deliveries, {}

    def find(self, delivery: Delivery) -> str | None:
        return None

    def recorded(self, delivery: Delivery, external_id: str) -> None:
        """Called in the transaction that records the delivery SENT (Jira stores the ticket key)."""


def deliveries_lease(deliveries: list[Delivery], now: dt.datetime) -> None:
    """Mark ``deliveries`` (locked or claimed by the caller) SENDING for one attempt, leased for
    NOTIFY_LEASE_SECONDS (a lease past its end is recovered), in one UPDATE and in memory: how the
    outbox claims a batch, and how a transport that batches (``admit``) claims what it takes in."""
    lease = now + dt.timedelta(seconds=settings.NOTIFY_LEASE_SECONDS)
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        status=DeliveryStatus.SENDING,
        attempts=F("attempts") + 1,
        attempt_started_at=now,
        lease_until=lease,
        updated_at=now,
    )
    for delivery in deliveries:
        delivery.status, delivery.attempts = DeliveryStatus.SENDING, delivery.attempts + 1
        delivery.attempt_started_at, delivery.lease_until = now, lease


def send_outcome(send: Callable[[Delivery], str], delivery: Delivery) -> str | Exception:
    """``send(delivery)``'s external id, or the exception it raised (the caller records every outcome)."""
    try:
        return send(delivery)
    except Exception as exc:  # noqa: BLE001 — the caller records every outcome
        return exc


_TRANSPORTS: dict[str, type[Transport]] = {}


def transport_register(cls: type[Transport]) -> type[Transport]:
    """Make ``cls`` the transport of its ``kind`` (a class decorator)."""
    _TRANSPORTS[cls.kind] = cls
    return cls


def transport_for(channel: Channel) -> Transport:
    """The transport of the channel's kind, bound to the channel."""
    return _TRANSPORTS[channel.kind](channel)


def transport_kinds() -> list[str]:
    """The channel kinds with a transport."""
    return list(_TRANSPORTS)


def kinds_unrouted() -> list[str]:
    """The channel kinds notification rules do not route to (Jira)."""
    return [kind for kind, cls in _TRANSPORTS.items() if cls.unrouted]


def transports_load() -> None:
    """Import every channel module of this package: each registers its transport (app start-up)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
