"""The delivery outbox: one Delivery per message, written in the incident event's transaction
(``delivery_queue``) and sent after commit by Celery tasks in batches (``deliveries_send``).

Failures retry with exponential backoff and jitter (a rate limit has its own budget); permanent
errors stop at once and mark the channel unhealthy (``channel_mark_unhealthy``, which emails the
admins). ``deliveries_recover`` (beat) takes back deliveries whose worker died mid-send and sends
due ones whose task was lost, asking the receiver first where it can tell what it already has.
``channel_test`` sends one test message through a channel, here and now."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from etl_monitor.celery import app as celery_app
from etl_monitor.crypto import UNDECRYPTABLE, secret_undecryptable
from etl_monitor.errors import InvalidInput, StateConflict
from etl_monitor.outage import task_publish
from etl_monitor.permissions import permission_require
from etl_monitor.protection import scrub
from incidents.events import event_record, events_record_bulk
from incidents.models import EventKind, Incident, IncidentEvent
from integrations.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Purpose,
)
from integrations.notifications.channels import (
    channel_configured,
    channel_mark_unhealthy,
    channel_test_target,
    channels_mark_sent,
)
from integrations.notifications.payloads import FOLLOW_UP, Message, payload_digest
from integrations.notifications.transports import Deferred, Permanent, Transient, deliveries_lease, transport_for

logger = logging.getLogger(__name__)


def delivery_key(incident: Incident, cause: Any, channel: Channel, target: str) -> str:
    """The idempotency key of a delivery: one per incident, cause (usually the timeline entry),
    channel and target — routing the same entry twice never sends twice."""
    return f"{incident.pk}:{cause}:{channel.pk}:{target}"


def delivery_queue(
    *,
    incident: Incident | None,
    event: IncidentEvent | None,
    channel: Channel,
    target: str,
    purpose: str,
    tier: int = 0,
    root: Delivery | None = None,
    key: str | None = None,
    enqueue: bool = True,
) -> Delivery:
    """Put one message in the outbox (once per ``key``: an existing delivery is returned as it is)
    and, unless told not to, send it once the transaction commits. Routing and Jira both queue
    through here. The key defaults to the one of this timeline entry, channel and target."""
    fields = delivery_new(
        incident=incident, event=event, channel=channel, target=target, purpose=purpose, tier=tier, root=root, key=key
    )
    defaults = {f.attname: getattr(fields, f.attname) for f in Delivery._meta.concrete_fields if f.attname != "id"}
    delivery, created = Delivery.objects.get_or_create(key=fields.key, defaults=defaults)
    if created and enqueue:
        enqueue_after_commit(delivery.pk)
    return delivery


def delivery_new(
    *,
    incident: Incident | None,
    event: IncidentEvent | None,
    channel: Channel,
    target: str,
    purpose: str,
    tier: int,
    root: Delivery | None,
    key: str | None = None,
) -> Delivery:
    """An unsaved delivery with its payload rendered; without a ``key``, the one of the timeline
    entry (``event``), channel and target."""
    if key is None:
        key = delivery_key(incident, event.pk if event else None, channel, target)
    transport = transport_for(channel)
    in_place = purpose in FOLLOW_UP.values() or purpose == Purpose.UPDATED
    update = root is not None and transport.can_update and in_place
    payload = transport.render(Message(purpose, incident, event, update=update))
    now = timezone.now()
    return Delivery(
        incident=incident,
        event=event,
        channel=channel,
        purpose=purpose,
        target=target,
        tier=tier,
        root=root,
        key=key,
        payload=payload,
        payload_digest=payload_digest(payload),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


_after_commit = threading.local()


def enqueue_after_commit(delivery_id: int) -> None:
    """Queue the delivery's send once the transaction commits — in batches: every delivery
    created by one transaction (a detection batch may open hundreds of incidents) goes out in
    tasks of NOTIFY_BATCH_SIZE."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _enqueue_batch([delivery_id])
        return
    # One flush per transaction; a new one when the last ran or was rolled back with a savepoint.
    flush = getattr(_after_commit, "flush", None)
    if flush is None or not any(func is flush for _sids, func, _robust in connection.run_on_commit):
        ids: list[int] = []

        def flush() -> None:
            if getattr(_after_commit, "flush", None) is flush:
                _after_commit.flush = None
            size = max(1, settings.NOTIFY_BATCH_SIZE)
            for start in range(0, len(ids), size):
                _enqueue_batch(ids[start : start + size])

        _after_commit.flush, _after_commit.ids = flush, ids
        transaction.on_commit(flush)
    _after_commit.ids.append(delivery_id)


# The tasks that send deliveries, queued by name: they wrap this module (a task sends, a send queues
# the next try), so it does not import them; IntegrationsConfig.ready registers them in every process.
# With the broker away, task_publish gives up at once (logged once, counted) and deliveries_recover
# sends the deliveries later.
DELIVERIES_SEND_TASK = "integrations.tasks.deliveries_send"
DELIVERY_SEND_TASK = "integrations.tasks.delivery_send"


def _enqueue_batch(delivery_ids: list[int]) -> None:
    task_publish(celery_app.tasks[DELIVERIES_SEND_TASK], (delivery_ids,))


def _enqueue(delivery_id: int, countdown: float = 0) -> None:
    task_publish(celery_app.tasks[DELIVERY_SEND_TASK], (delivery_id,), countdown=countdown)


def incident_note(incident: Incident, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
    event_record(incident, kind, message=message, data=data or {})


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never sooner than the receiver's Retry-After."""
    ceiling = min(settings.NOTIFY_BACKOFF_MAX_SECONDS, settings.NOTIFY_BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    wait = random.uniform(ceiling / 2, ceiling)
    return max(wait, min(retry_after or 0, settings.NOTIFY_BACKOFF_MAX_SECONDS))


def delivery_send(delivery_id: int, now: dt.datetime | None = None) -> Delivery | None:
    """Send one delivery if it is due and nobody else is sending it; record the outcome.

    Returns the delivery (its new state), or None when there was nothing to do."""
    done = deliveries_send([delivery_id], now=now)
    return done[0] if done else None


def deliveries_send(delivery_ids: list[int], now: dt.datetime | None = None) -> list[Delivery]:
    """Send the due deliveries among ``delivery_ids`` that nobody else is sending; record each outcome.

    A batch shares its bookkeeping: one claim (SELECT … FOR UPDATE SKIP LOCKED, one UPDATE to
    SENDING), the messages sent in parallel (email over one SMTP connection), and one UPDATE plus
    one insert of timeline entries for those sent. Failures are recorded one by one."""
    now = now or timezone.now()
    ready: list[Delivery] = []
    waiting: list[Delivery] = []
    with transaction.atomic():
        due = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel", "root")
            .filter(pk__in=delivery_ids, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED])
            .filter(next_attempt_at__lte=now)
            .order_by("pk")
        )
        for delivery in due:
            root = delivery.root
            if root is not None and root.status != DeliveryStatus.SENT:
                if root.status != DeliveryStatus.GAVE_UP:
                    waiting.append(delivery)  # the first message is not out yet: wait for it
                    continue
                delivery.root = None  # the first message never arrived: this one stands alone
                delivery.payload = {**delivery.payload, "update": False}
                delivery.save(update_fields=["root", "payload", "updated_at"])
            ready.append(delivery)
        if waiting:
            # No attempt used; tried again in a few seconds.
            Delivery.objects.filter(pk__in=[d.pk for d in waiting]).update(
                next_attempt_at=now + dt.timedelta(seconds=5), updated_at=now
            )
            ids = [d.pk for d in waiting]
            transaction.on_commit(lambda: [_enqueue(pk, countdown=5) for pk in ids])
        deliveries_lease(ready, now)
    for group, outcomes in _transmit(ready, now):
        _outcomes_record(group, outcomes)
    return ready + waiting


def _outcomes_record(deliveries: list[Delivery], outcomes: list[str | Exception]) -> None:
    """Record what became of ``deliveries`` (one channel's): the sent ones in one go, failures one by one."""
    sent = [(d, outcome) for d, outcome in zip(deliveries, outcomes, strict=True) if isinstance(outcome, str)]
    _sent_many(sent)
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        if isinstance(outcome, Deferred):
            _defer(delivery, outcome)
        elif isinstance(outcome, Transient):
            _failed(delivery, outcome.reason, retry_after=outcome.retry_after, rate_limited=outcome.rate_limited)
        elif isinstance(outcome, Permanent):
            _gave_up(delivery, outcome.reason, permanent=outcome.channel_fault)
        elif isinstance(outcome, Exception):
            _failed(delivery, f"{type(outcome).__name__}: {outcome}"[:300])


def _transmit(deliveries: list[Delivery], now: dt.datetime) -> Iterator[tuple[list[Delivery], list[str | Exception]]]:
    """Send every delivery; each gets its external id or the exception that stopped it. Messages
    of one channel go together (email: one SMTP connection); HTTP channels in parallel threads.

    Yields each channel's deliveries and outcomes as soon as that channel is done, so the caller
    records them while a slower channel is still sending: a worker that dies waiting on one receiver
    (killed, or out of memory) leaves only that receiver's messages unrecorded — the others are not
    sent a second time by the recovery sweep (email cannot be asked what it received)."""
    by_channel: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        by_channel.setdefault(delivery.channel_id, []).append(delivery)

    # Each transport reads what it sends by here (the settings as they are now); the sends may run
    # in other threads, which touch no database.
    transports = {channel_id: transport_for(group[0].channel) for channel_id, group in by_channel.items()}
    for transport in transports.values():
        transport.prepare()
    # Each transport says what goes now (here, where the database is at hand): the ones it holds
    # back are recorded at once; the ones it takes in (a batch to one person) go with the rest.
    for channel_id, group in list(by_channel.items()):
        admitted, held = transports[channel_id].admit(group, now)
        if held:
            kept = [d for d in group if d.pk in held]
            yield kept, [held[d.pk] for d in kept]
        if admitted:
            by_channel[channel_id] = admitted
        else:
            del by_channel[channel_id]

    def run(group: list[Delivery]) -> tuple[list[Delivery], list[str | Exception]]:
        channel = group[0].channel
        if secret_undecryptable(channel.secret):
            # No configured key reads the channel's secret: sending without it cannot work.
            return group, [Permanent(UNDECRYPTABLE) for _ in group]
        outcomes = transports[channel.pk].send_many(group)
        for delivery in group:
            outcome = outcomes.get(delivery.pk)
            if isinstance(outcome, Exception) and not isinstance(outcome, (Transient, Permanent)):
                logger.error("delivery %s failed unexpectedly", delivery.pk, exc_info=outcome)
        return group, [outcomes.get(d.pk, RuntimeError("not sent")) for d in group]

    groups = list(by_channel.values())
    if len(groups) == 1:
        yield run(groups[0])
    elif groups:
        # Within a group a transport may parallelise itself (HTTP); groups run side by side, and
        # each is handed back (to this thread, which owns the database connection) when it is done.
        with ThreadPoolExecutor(max_workers=min(len(groups), 4)) as pool:
            for future in as_completed([pool.submit(run, group) for group in groups]):
                yield future.result()


def _sent(delivery: Delivery, external_id: str) -> Delivery:
    _sent_many([(delivery, external_id)])
    return delivery


def _sent_many(sent: list[tuple[Delivery, str]]) -> None:
    """Record deliveries as SENT: one UPDATE, one timeline insert, one channel timestamp each channel."""
    if not sent:
        return
    now = timezone.now()
    for delivery, external_id in sent:
        delivery.status, delivery.sent_at, delivery.external_id = DeliveryStatus.SENT, now, external_id[:200]
        delivery.last_error, delivery.lease_until, delivery.updated_at = "", None, now
    with transaction.atomic():
        _mark_sent([(d.pk, d.external_id) for d, _ in sent], now)
        channels_mark_sent({d.channel_id for d, _ in sent}, now)
        for delivery, external_id in sent:
            transport_for(delivery.channel).recorded(delivery, external_id)
        events_record_bulk(
            [
                (
                    d.incident_id,
                    EventKind.NOTIFIED,
                    f"{d.get_purpose_display()} sent via {d.channel} to {d.target}"
                    + (" (possibly a second copy)" if d.possible_duplicate else ""),
                    {"delivery": d.pk, "channel": d.channel.name, "attempts": d.attempts},
                )
                for d, _ in sent
                if d.incident_id
            ],
            at=now,
        )


def _mark_sent(rows: list[tuple[int, str]], now: dt.datetime) -> None:
    """One UPDATE for the batch; only the external id differs from row to row (a derived table
    of (id, external id) pairs — portable to SQLite ≥ 3.33, where Django's bulk_update would build
    one CASE per column and cost more than the sending)."""
    table = Delivery._meta.db_table
    pairs = " UNION ALL ".join(["SELECT %s AS id, %s AS ext"] * len(rows))
    params: list[Any] = [DeliveryStatus.SENT, now, now]
    for pk, external_id in rows:
        params += [pk, external_id]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, sent_at = %s, updated_at = %s, last_error = '', "  # noqa: S608
            f"lease_until = NULL, external_id = v.ext FROM ({pairs}) AS v WHERE {table}.id = v.id",
            params,
        )


def _defer(delivery: Delivery, outcome: Deferred) -> None:
    """Back to PENDING without using an attempt (it was never tried)."""
    now = timezone.now()
    wait = backoff_seconds(1, outcome.retry_after)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING,
        attempts=F("attempts") - 1,
        next_attempt_at=now + dt.timedelta(seconds=wait),
        lease_until=None,
        last_error=scrub(f"deferred: {outcome.reason}")[:1000],
        updated_at=now,
    )
    delivery.status, delivery.attempts = DeliveryStatus.PENDING, delivery.attempts - 1
    _enqueue(delivery.pk, countdown=wait)


def _failed(
    delivery: Delivery, reason: str, retry_after: float | None = None, *, rate_limited: bool = False
) -> Delivery:
    """A transient failure: try again after a backoff, or give up once the attempts are spent.

    Two budgets: NOTIFY_MAX_ATTEMPTS failures that are not rate limits, and
    NOTIFY_MAX_ATTEMPTS_RATE_LIMITED attempts in all for a receiver that is rate-limiting us. The
    rate-limited attempts do not count against the first: a delivery that waited out a burst of
    429s and then met one timeout has failed once, not nine times."""
    rate_limited_attempts = delivery.rate_limited_attempts + (1 if rate_limited else 0)
    if rate_limited:
        spent = delivery.attempts >= max(settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED, settings.NOTIFY_MAX_ATTEMPTS)
    else:
        spent = delivery.attempts - rate_limited_attempts >= settings.NOTIFY_MAX_ATTEMPTS
    if spent:
        return _gave_up(delivery, f"{reason} (after {delivery.attempts} attempts)", permanent=False)
    now = timezone.now()
    wait = backoff_seconds(delivery.attempts, retry_after)
    Delivery.objects.filter(pk=delivery.pk).update(
        rate_limited_attempts=rate_limited_attempts,
        status=DeliveryStatus.FAILED,
        last_error=scrub(reason)[:1000],
        next_attempt_at=now + dt.timedelta(seconds=wait),
        lease_until=None,
        updated_at=now,
    )
    _enqueue(delivery.pk, countdown=wait)
    delivery.status, delivery.last_error = DeliveryStatus.FAILED, reason
    return delivery


def _gave_up(delivery: Delivery, reason: str, *, permanent: bool) -> Delivery:
    now = timezone.now()
    reason = scrub(reason)[:1000]
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.GAVE_UP, last_error=reason, lease_until=None, updated_at=now
        )
        if delivery.incident_id:
            incident_note(
                delivery.incident,
                EventKind.NOTIFY_FAILED,
                f"{delivery.get_purpose_display()} via {delivery.channel} to {delivery.target} failed: {reason}",
                {"delivery": delivery.pk, "channel": delivery.channel.name},
            )
    if permanent:
        channel_mark_unhealthy(delivery.channel, reason)
    delivery.status, delivery.last_error = DeliveryStatus.GAVE_UP, reason
    return delivery


def deliveries_recover(now: dt.datetime | None = None) -> dict[str, int]:
    """The outbox sweep (beat): resume deliveries whose sender died mid-send, and send the due ones
    whose task was lost (broker down at commit time, worker restarted…)."""
    now = now or timezone.now()
    counts = {"recovered": 0, "found_sent": 0, "enqueued": 0}
    for pk in list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_until__lt=now).values_list("pk", flat=True)[:500]
    ):
        with transaction.atomic():
            delivery = (
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("channel", "root")
                .filter(pk=pk, status=DeliveryStatus.SENDING, lease_until__lt=now)
                .first()
            )
            if delivery is None:
                continue
            transport = transport_for(delivery.channel)
            try:
                found = transport.find(delivery)
                looked = transport.can_find
            except (Transient, Permanent) as exc:
                # The lookup itself fails: try again later, but not for ever — after a few
                # leases, resend and flag the possible second copy rather than stay stuck.
                started = delivery.attempt_started_at or delivery.created_at
                if (now - started).total_seconds() < 5 * settings.NOTIFY_LEASE_SECONDS:
                    delivery.lease_until = now + dt.timedelta(seconds=settings.NOTIFY_LEASE_SECONDS)
                    delivery.last_error = scrub(f"recovery lookup failed: {exc}")[:1000]
                    delivery.save(update_fields=["lease_until", "last_error", "updated_at"])
                    continue
                found, looked = None, False
            if found:
                counts["found_sent"] += 1
            else:
                # Unknown outcome. Where the transport could look (Slack) the message is not
                # there; elsewhere it may have arrived: resend with the same id and say so.
                delivery.possible_duplicate = delivery.possible_duplicate or not looked
                delivery.status = DeliveryStatus.PENDING
                delivery.next_attempt_at = now
                delivery.last_error = "the sending worker stopped before recording the outcome"
                delivery.save(
                    update_fields=["possible_duplicate", "status", "next_attempt_at", "last_error", "updated_at"]
                )
                transaction.on_commit(lambda pk=pk: _enqueue(pk))
                counts["recovered"] += 1
        if found:
            _sent(delivery, found)
    late = now - dt.timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS)
    stuck = Delivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED], next_attempt_at__lte=late
    ).values_list("pk", flat=True)
    for pk in list(stuck[:1000]):
        _enqueue(pk)
        counts["enqueued"] += 1
    return counts


def delivery_retry(*, user: Any, delivery: Delivery) -> Delivery:
    """Send a delivery that gave up (or failed) again, now."""
    permission_require(user, "integrations.change_delivery", "retry deliveries")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status not in (DeliveryStatus.GAVE_UP, DeliveryStatus.FAILED):
            raise StateConflict(
                f"Delivery #{delivery.pk} is {delivery.get_status_display().lower()}; "
                "only one that failed can be retried."
            )
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = delivery.rate_limited_attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "attempts", "rate_limited_attempts", "next_attempt_at", "updated_at"])
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def channel_test(*, user: Any, channel: Channel, target: str = "") -> Delivery:
    """Send a test message through the channel now (synchronously) and return the delivery.
    Without a ``target`` it goes where ``channel_test_target`` says."""
    permission_require(user, "integrations.change_channel", "test channels")
    if problem := channel_configured(channel):
        raise InvalidInput({"channel": [f"{channel.name} cannot send: {problem}."]})
    target = target or channel_test_target(channel, user)
    if not target:
        raise InvalidInput({"target": [transport_for(channel).test_target_missing]})
    delivery = delivery_queue(
        incident=None,
        event=None,
        channel=channel,
        target=target,
        purpose=Purpose.TEST,
        key=f"test:{channel.pk}:{timezone.now().timestamp()}",
        enqueue=False,  # sent right here, so the answer says how it went
    )
    return delivery_send(delivery.pk) or delivery
