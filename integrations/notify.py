"""Notifications: routing, escalation and the delivery outbox.

Flow: every incident timeline entry is recorded with ``incident_event_recorded``
inside its transaction; ``on_incident_event`` routes it (severity → notification
rule → tier → channels and targets) and writes one Delivery per message in that
same transaction. After commit a Celery task sends each one (``delivery_send``);
failures retry with exponential backoff and jitter, permanent errors stop at once
and mark the channel unhealthy. ``deliveries_recover`` (beat) picks up deliveries
whose task was lost or whose worker died mid-send; ``escalations_run`` (beat)
notifies the next tier of incidents nobody acknowledged in time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import threading
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from etl_monitor.protection import outbound_redact, scrub
from incidents.models import EventKind, Incident, IncidentEvent, IncidentStatus
from integrations.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    IncidentNotification,
    NotificationRule,
    Purpose,
)
from integrations.transports import Deferred, Permanent, Transient, transport_for

logger = logging.getLogger(__name__)

SEVERITY_STYLE = {
    "CRITICAL": ("🔴", "#d32f2f"),
    "HIGH": ("🟠", "#f57c00"),
    "MEDIUM": ("🟡", "#fbc02d"),
    "LOW": ("🟢", "#388e3c"),
}
# Timeline entries this module writes itself: never routed (no loops).
OWN_KINDS = {EventKind.NOTIFIED, EventKind.NOT_NOTIFIED, EventKind.NOTIFY_FAILED}
# What each lifecycle entry becomes, and who hears about it.
FIRST = {EventKind.OPENED: Purpose.OPENED, EventKind.REOPENED: Purpose.REOPENED}
FOLLOW_UP = {
    EventKind.ACKNOWLEDGED: Purpose.ACKNOWLEDGED,
    EventKind.RESOLVED: Purpose.RESOLVED,
    EventKind.CLOSED: Purpose.CLOSED,
}


# --- routing ---------------------------------------------------------------------------------


def rule_for(incident: Incident) -> NotificationRule | None:
    """The notification rule of an incident: its team's, else one of its tags', else the severity's."""
    rules = list(NotificationRule.objects.filter(severity=incident.severity, enabled=True))
    loader = incident.loader
    if loader is not None:
        for rule in rules:
            if rule.team_id is not None and rule.team_id == loader.owner_id:
                return rule
        tag_ids = set(loader.tags.values_list("pk", flat=True))
        for rule in sorted(rules, key=lambda r: r.pk):
            if rule.tag_id is not None and rule.tag_id in tag_ids:
                return rule
    return next((r for r in rules if r.team_id is None and r.tag_id is None), None)


def channel_configured(channel: Channel) -> str:
    """Why a channel cannot send (empty = it can)."""
    if not channel.enabled:
        return "disabled"
    if channel.kind == ChannelKind.SLACK and not (channel.secret or settings.SLACK_BOT_TOKEN):
        return "no Slack bot token (SLACK_BOT_TOKEN)"
    if channel.kind == ChannelKind.SLACK_WEBHOOK and not channel.secret:
        return "no incoming-webhook URL"
    if channel.kind == ChannelKind.WEBHOOK and not channel.url:
        return "no URL"
    if channel.kind == ChannelKind.JIRA:
        from integrations.jira import jira_configured

        return jira_configured()
    return ""


def _targets(channel: Channel, tier: dict[str, Any]) -> list[str]:
    if channel.kind == ChannelKind.EMAIL:
        recipients = [r for r in tier.get("recipients") or [] if r]
        return [",".join(sorted(recipients))] if recipients else []
    if channel.kind == ChannelKind.SLACK:
        return [tier["slack_channel"]] if tier.get("slack_channel") else []
    if channel.kind == ChannelKind.SLACK_WEBHOOK:
        return ["incoming-webhook"]
    if channel.kind == ChannelKind.JIRA:
        return []  # tickets follow the Jira settings, not notification rules
    return [channel.url]


# --- payloads ----------------------------------------------------------------------------------


def incident_url(incident: Incident) -> str:
    return f"{settings.ETL_MONITOR_BASE_URL.rstrip('/')}/admin/incidents/incident/{incident.pk}/change/"


def _links(incident: Incident) -> dict[str, str]:
    subject = incident.loader.loader_code if incident.loader_id else incident.subject
    links = {"incident": incident_url(incident)}
    if settings.GRAFANA_URL:
        links["dashboard"] = f"{settings.GRAFANA_URL.rstrip('/')}/?var-loader={subject}"
    if settings.KIBANA_URL:
        query = incident.correlation_id or subject
        links["logs"] = f"{settings.KIBANA_URL.rstrip('/')}/app/discover#/?_a=(query:(query_string:(query:'{query}')))"
    if incident.external_url:
        links["jira"] = incident.external_url
    return links


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def incident_context(incident: Incident) -> dict[str, Any]:
    """What every message says about an incident; protected loader fields never leave."""
    loader = incident.loader
    service = incident.subject
    owner = ""
    if loader is not None:
        shown = outbound_redact(
            "loaders.loader", {"name": loader.name, "owner": loader.owner.name if loader.owner_id else ""}
        )
        service = f"{loader.loader_code} — {shown.get('name')}" if shown.get("name") else loader.loader_code
        owner = shown.get("owner") or ""
    metrics = {k: v for k, v in (incident.metrics or {}).items() if isinstance(v, (int, float, str)) and k != "error"}
    return {
        "id": incident.pk,
        "title": scrub(incident.title),
        "severity": incident.severity,
        "status": incident.status,
        "category": incident.category,
        "service": service,
        "owner": owner,
        "detected_at": _when(incident.first_seen),
        "last_seen": _when(incident.last_seen),
        "occurrences": incident.occurrences,
        "description": scrub(incident.description),
        "impact": scrub(incident.impact),
        "suggestion": scrub(incident.suggestion),
        "metrics": metrics,
        "correlation_id": incident.correlation_id,
        "links": _links(incident),
        "jira_key": incident.external_key,
    }


HEADLINES = {
    Purpose.OPENED: "",
    Purpose.REOPENED: "Reopened: ",
    Purpose.ESCALATED: "Escalation: ",
    Purpose.REMINDER: "Still firing: ",
    Purpose.ACKNOWLEDGED: "Acknowledged: ",
    Purpose.RESOLVED: "Resolved: ",
    Purpose.CLOSED: "Closed: ",
    Purpose.UPDATED: "",
    Purpose.TEST: "",
}


def _follow_up_text(purpose: str, ctx: dict[str, Any], event: IncidentEvent | None) -> str:
    who = f" by {event.actor.get_username()}" if event is not None and event.actor_id else ""
    if purpose == Purpose.ACKNOWLEDGED:
        return f"Acknowledged{who}."
    if purpose == Purpose.RESOLVED:
        return f"Resolved{who or ' automatically: the condition is clear'}."
    if purpose == Purpose.CLOSED:
        return f"Closed{who}."
    if purpose == Purpose.ESCALATED:
        return "Not acknowledged in time: escalated."
    if purpose == Purpose.REMINDER:
        return f"Still firing: {ctx['occurrences']} occurrences, last seen {ctx['last_seen']}."
    return ""


def _slack_blocks(ctx: dict[str, Any], purpose: str) -> list[dict[str, Any]]:
    emoji, _colour = SEVERITY_STYLE.get(ctx["severity"], ("⚪", "#9e9e9e"))
    state = "" if ctx["status"] == IncidentStatus.OPEN else f" · *{ctx['status'].title()}*"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": ctx["title"][:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity:*\n{emoji} {ctx['severity']}{state}"},
                {"type": "mrkdwn", "text": f"*Service:*\n{ctx['service']}"},
                {"type": "mrkdwn", "text": f"*Detected:*\n{ctx['detected_at']}"},
                {"type": "mrkdwn", "text": f"*Category:*\n{ctx['category']}"},
            ],
        },
    ]
    if ctx["description"]:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Description:*\n{ctx['description']}"[:2900]}}
        )
    if ctx["suggestion"]:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Suggested action:*\n{ctx['suggestion']}"[:2900]}}
        )
    if ctx["correlation_id"]:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Correlation id `{ctx['correlation_id']}`"}]}
        )
    labels = {"incident": "View incident", "dashboard": "View dashboard", "logs": "View logs", "jira": "View Jira"}
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": labels[name]},
            "url": url,
            "action_id": f"open_{name}",
        }
        for name, url in ctx["links"].items()
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


def render_payload(
    channel: Channel, purpose: str, incident: Incident | None, event: IncidentEvent | None, *, update: bool
) -> dict[str, Any]:
    """The message for one channel kind, rendered once when the delivery is created."""
    if channel.kind == ChannelKind.JIRA:
        from integrations.jira import jira_payload

        return jira_payload(purpose, incident, event)
    if incident is None:  # a test notification
        text = "ETL Monitor test notification: this channel works."
        ctx = {"title": "Test notification", "severity": "LOW"}
    else:
        ctx = incident_context(incident)
        text = f"{HEADLINES[purpose]}[{ctx['severity']}] {ctx['title']}"
    follow_up = _follow_up_text(purpose, ctx, event) if incident is not None else ""
    if channel.kind == ChannelKind.EMAIL:
        template_ctx = {
            "incident": ctx,
            "purpose": purpose,
            "headline": HEADLINES.get(purpose, ""),
            "follow_up": follow_up,
        }
        if incident is None:
            return {
                "subject": "[TEST] ETL Monitor test notification",
                "text": text + "\n",
                "html": "",
                "severity": "TEST",
            }
        return {
            "subject": f"[{ctx['severity']}] {HEADLINES[purpose]}{ctx['title']}",
            "text": render_to_string("notifications/incident_email.txt", template_ctx),
            "html": render_to_string("notifications/incident_email.html", template_ctx),
            "severity": ctx["severity"],
        }
    if channel.kind in (ChannelKind.SLACK, ChannelKind.SLACK_WEBHOOK):
        if incident is None:
            return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
        payload = {"text": text, "blocks": _slack_blocks(ctx, purpose), "update": update}
        if follow_up:
            payload["thread_text"] = follow_up
        return payload
    event_name = {"TEST": "test"}.get(purpose, purpose.lower())
    return {
        "version": "1",
        "event": f"incident.{event_name}",
        "incident": None if incident is None else {k: v for k, v in ctx.items()},
        "message": follow_up or text,
    }


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --- creating deliveries (inside the incident event's transaction) --------------------------------


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
    key: str,
    enqueue: bool = True,
) -> Delivery:
    """Put one message in the outbox (once per ``key``: an existing delivery is returned as it is)
    and, unless told not to, send it once the transaction commits. Routing and Jira both queue
    through here."""
    fields = _delivery_new(
        incident=incident, event=event, channel=channel, target=target, purpose=purpose, tier=tier, root=root, key=key
    )
    defaults = {f.attname: getattr(fields, f.attname) for f in Delivery._meta.concrete_fields if f.attname != "id"}
    delivery, created = Delivery.objects.get_or_create(key=key, defaults=defaults)
    if created and enqueue:
        _enqueue_after_commit(delivery.pk)
    return delivery


def _delivery_new(
    *,
    incident: Incident | None,
    event: IncidentEvent | None,
    channel: Channel,
    target: str,
    purpose: str,
    tier: int,
    root: Delivery | None,
    key: str,
) -> Delivery:
    """An unsaved delivery with its payload rendered."""
    in_place = purpose in FOLLOW_UP.values() or purpose == Purpose.UPDATED
    update = root is not None and transport_for(channel).can_update and in_place
    payload = render_payload(channel, purpose, incident, event, update=update)
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
        payload_digest=_digest(payload),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


_after_commit = threading.local()


def _enqueue_after_commit(delivery_id: int) -> None:
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


def _enqueue_batch(delivery_ids: list[int]) -> None:
    from integrations.tasks import deliveries_send_task

    try:
        deliveries_send_task.apply_async((delivery_ids,))
    except Exception:  # noqa: BLE001 — the broker is down: deliveries_recover sends them later
        logger.warning("could not enqueue %d deliveries; the recovery sweep will send them", len(delivery_ids))


def _enqueue(delivery_id: int, countdown: float = 0) -> None:
    from integrations.tasks import delivery_send_task

    try:
        delivery_send_task.apply_async((delivery_id,), countdown=countdown)
    except Exception:  # noqa: BLE001 — the broker is down: deliveries_recover sends it later
        logger.warning("could not enqueue delivery %s; the recovery sweep will send it", delivery_id)


def _roots(incident: Incident) -> dict[tuple[int, str], Delivery]:
    """The first message of the incident per channel and target (what follow-ups update or answer)."""
    roots: dict[tuple[int, str], Delivery] = {}
    firsts = (Purpose.OPENED, Purpose.REOPENED, Purpose.ESCALATED)
    deliveries = Delivery.objects.filter(incident=incident, purpose__in=firsts, root__isnull=True)
    for d in deliveries.exclude(channel__kind=ChannelKind.JIRA).order_by("pk"):
        roots.setdefault((d.channel_id, d.target), d)
    return roots


def _notify_tier(incident: Incident, event: IncidentEvent, rule: NotificationRule, tier: int, purpose: str) -> int:
    tiers = rule.tiers()
    spec = tiers[min(tier, len(tiers) - 1)]
    channels = {c.name: c for c in Channel.objects.filter(name__in=spec.get("channels") or [])}
    roots = _roots(incident) if purpose == Purpose.ESCALATED else {}
    made, skipped = 0, []
    fresh: list[Delivery] = []
    for name in spec.get("channels") or []:
        channel = channels.get(name)
        if channel is None:
            skipped.append(f"{name}: no such channel")
            continue
        if channel.kind == ChannelKind.JIRA:
            skipped.append(f"{name}: Jira tickets follow the Jira settings, not notification rules")
            continue
        if problem := channel_configured(channel):
            skipped.append(f"{name}: {problem}")
            continue
        targets = _targets(channel, spec)
        if not targets:
            skipped.append(f"{name}: no recipients / Slack channel in tier {tier}")
        for target in targets:
            # An escalation to people already told goes in the first message's thread.
            root = roots.get((channel.pk, target))
            fresh.append(
                _delivery_new(
                    incident=incident,
                    event=event,
                    channel=channel,
                    target=target,
                    purpose=purpose,
                    tier=tier,
                    root=root,
                    key=delivery_key(incident, event.pk, channel, target),
                )
            )
            made += 1
    # A new event's deliveries are new (their keys name the event): one insert for them all.
    for delivery in Delivery.objects.bulk_create(fresh):
        _enqueue_after_commit(delivery.pk)
    if skipped:
        _note(
            incident, EventKind.NOT_NOTIFIED, "Some channels were skipped: " + "; ".join(skipped), {"skipped": skipped}
        )
    return made


def _note(incident: Incident, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
    from incidents.services import event_record

    event_record(incident, kind, message=message, data=data or {})


def on_incident_event(sender: Any, event: IncidentEvent, **kwargs: Any) -> None:
    """Route one timeline entry (inside its transaction). Never raises into detection: a routing
    bug is logged and written on the timeline instead."""
    if event.kind in OWN_KINDS:
        return
    from integrations.jira import jira_route

    try:
        with transaction.atomic():
            if settings.NOTIFICATIONS_ENABLED:
                _route(event)
            jira_route(event)  # Jira has its own switch (JIRA_ENABLED)
    except Exception as exc:
        logger.exception("routing notifications for incident %s failed", event.incident_id)
        _note(event.incident, EventKind.NOTIFY_FAILED, scrub(f"Routing failed: {type(exc).__name__}: {exc}")[:500])


def _route(event: IncidentEvent) -> None:
    incident = event.incident
    now = event.at
    if event.kind == EventKind.SUPPRESSED:
        _note(incident, EventKind.NOT_NOTIFIED, f"Nobody notified: {event.message or 'a silence matches'}.")
    elif event.kind in FIRST:
        if incident.suppressed:
            return  # the SUPPRESSED entry that follows says so
        rule = rule_for(incident)
        if rule is None:
            _note(incident, EventKind.NOT_NOTIFIED, f"Nobody notified: no notification rule for {incident.severity}.")
            return
        due = now + dt.timedelta(seconds=rule.escalation_timeout) if rule.escalation_timeout else None
        fields = {"rule": rule, "tier": 0, "escalations": 0, "last_reminder_at": now, "next_escalation_at": due}
        if event.kind == EventKind.OPENED:  # a new incident: nothing to read first
            IncidentNotification.objects.create(incident=incident, **fields)
        else:
            IncidentNotification.objects.update_or_create(incident=incident, defaults=fields)
        _notify_tier(incident, event, rule, 0, FIRST[event.kind])
    elif event.kind == EventKind.ESCALATED:
        state = IncidentNotification.objects.filter(incident=incident).select_related("rule").first()
        if state and state.rule:
            _notify_tier(incident, event, state.rule, event.data.get("tier", state.tier), Purpose.ESCALATED)
    elif event.kind == EventKind.REFIRED:
        _remind(incident, event, now)
    elif event.kind in FOLLOW_UP:
        IncidentNotification.objects.filter(incident=incident).update(next_escalation_at=None)  # stops escalation
        _follow_up(incident, event, FOLLOW_UP[event.kind])


def _to_those_told(
    incident: Incident, event: IncidentEvent | None, purpose: str, *, key: str, wanted: Any = None
) -> None:
    """One delivery per channel and target that heard about the incident (its first message is
    the root: Slack updates it or answers in its thread). ``wanted(channel)`` narrows them."""
    for (_channel_id, target), root in _roots(incident).items():
        channel = root.channel
        if channel_configured(channel) or (wanted is not None and not wanted(channel)):
            continue
        delivery_queue(
            incident=incident,
            event=event,
            channel=channel,
            target=target,
            purpose=purpose,
            tier=root.tier,
            root=root,
            key=delivery_key(incident, key, channel, target),
        )


def _follow_up(incident: Incident, event: IncidentEvent, purpose: str) -> None:
    """Acknowledged / resolved / closed: tell the channels that were told about the incident.

    Slack bot messages are updated in place (plus a line in their thread); a resolution is
    also sent to email and Slack webhooks; generic webhooks hear about every step."""
    _to_those_told(
        incident,
        event,
        purpose,
        key=str(event.pk),
        wanted=lambda channel: channel.kind in (ChannelKind.SLACK, ChannelKind.WEBHOOK) or purpose == Purpose.RESOLVED,
    )


def slack_messages_refresh(incident: Incident, reason: str) -> None:
    """Re-render the incident's Slack bot messages in place — e.g. once its Jira ticket exists, so
    the first message gets its "View Jira" button."""
    _to_those_told(incident, None, Purpose.UPDATED, key=reason, wanted=lambda c: c.kind == ChannelKind.SLACK)


def _remind(incident: Incident, event: IncidentEvent, now: dt.datetime) -> None:
    """A re-fire notifies nobody anew; at the rule's repeat interval it becomes a reminder in the
    Slack thread (and a reminder email / webhook event)."""
    if incident.suppressed or incident.status != IncidentStatus.OPEN:
        return
    state = (
        IncidentNotification.objects.select_for_update(of=("self",))
        .filter(incident=incident)
        .select_related("rule")
        .first()
    )
    if state is None or state.rule is None or not state.rule.repeat_interval:
        return
    if state.last_reminder_at and (now - state.last_reminder_at).total_seconds() < state.rule.repeat_interval:
        return
    state.last_reminder_at = now
    state.save(update_fields=["last_reminder_at"])
    _to_those_told(incident, event, Purpose.REMINDER, key=str(event.pk))


# --- escalation (beat) ---------------------------------------------------------------------------


def escalations_run(now: dt.datetime | None = None) -> int:
    """Notify the next tier of every open, unacknowledged, unsilenced incident whose timeout passed."""
    from incidents.services import event_record

    now = now or timezone.now()
    if not settings.NOTIFICATIONS_ENABLED:
        return 0
    done = 0
    due = IncidentNotification.objects.filter(next_escalation_at__lte=now).values_list("pk", flat=True)
    for pk in list(due[:500]):
        with transaction.atomic():
            state = (
                IncidentNotification.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("rule", "incident")
                .filter(pk=pk, next_escalation_at__lte=now)
                .first()
            )
            if state is None:
                continue
            incident, rule = state.incident, state.rule
            if (
                incident.status != IncidentStatus.OPEN
                or incident.suppressed
                or rule is None
                or not rule.enabled
                or not rule.escalation_timeout
            ):
                state.next_escalation_at = None
                state.save(update_fields=["next_escalation_at"])
                continue
            last = len(rule.tiers()) - 1
            repeats_done = max(0, state.escalations - (last - 0))
            if state.tier < last:
                state.tier += 1
            elif repeats_done >= rule.escalation_repeat:
                state.next_escalation_at = None
                state.save(update_fields=["next_escalation_at"])
                continue
            state.escalations += 1
            more = state.tier < last or (state.escalations - last) < rule.escalation_repeat
            state.next_escalation_at = now + dt.timedelta(seconds=rule.escalation_timeout) if more else None
            state.save(update_fields=["tier", "escalations", "next_escalation_at"])
            event_record(
                incident,
                EventKind.ESCALATED,
                at=now,
                message=f"Not acknowledged within {rule.escalation_timeout} s: tier {state.tier} notified.",
                data={"tier": state.tier, "escalation": state.escalations},
            )
            done += 1
    return done


# --- sending ----------------------------------------------------------------------------------------


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
        lease = now + dt.timedelta(seconds=settings.NOTIFY_LEASE_SECONDS)
        Delivery.objects.filter(pk__in=[d.pk for d in ready]).update(
            status=DeliveryStatus.SENDING,
            attempts=F("attempts") + 1,
            attempt_started_at=now,
            lease_until=lease,
            updated_at=now,
        )
        for delivery in ready:
            delivery.status, delivery.attempts = DeliveryStatus.SENDING, delivery.attempts + 1
            delivery.attempt_started_at, delivery.lease_until = now, lease
    outcomes = _transmit(ready)
    sent = [(d, outcome) for d, outcome in zip(ready, outcomes, strict=True) if isinstance(outcome, str)]
    _sent_many(sent)
    for delivery, outcome in zip(ready, outcomes, strict=True):
        if isinstance(outcome, Deferred):
            _defer(delivery, outcome)
        elif isinstance(outcome, Transient):
            _failed(delivery, outcome.reason, retry_after=outcome.retry_after, rate_limited=outcome.rate_limited)
        elif isinstance(outcome, Permanent):
            _gave_up(delivery, outcome.reason, permanent=outcome.channel_fault)
        elif isinstance(outcome, Exception):
            _failed(delivery, f"{type(outcome).__name__}: {outcome}"[:300])
    return ready + waiting


def _transmit(deliveries: list[Delivery]) -> list[str | Exception]:
    """Send every delivery; each gets its external id or the exception that stopped it. Messages
    of one channel go together (email: one SMTP connection); HTTP channels in parallel threads."""
    from concurrent.futures import ThreadPoolExecutor

    outcomes: dict[int, str | Exception] = {}
    by_channel: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        by_channel.setdefault(delivery.channel_id, []).append(delivery)

    def run(group: list[Delivery]) -> None:
        outcomes.update(transport_for(group[0].channel).send_many(group))

    groups = list(by_channel.values())
    if len(deliveries) == 1:
        run(groups[0])
    elif groups:
        # Within a group a transport may parallelise itself (HTTP); groups run side by side.
        with ThreadPoolExecutor(max_workers=min(len(groups), 4)) as pool:
            for future in [pool.submit(run, group) for group in groups]:
                future.result()
    for delivery in deliveries:
        outcome = outcomes.get(delivery.pk)
        if isinstance(outcome, Exception) and not isinstance(outcome, (Transient, Permanent)):
            logger.error("delivery %s failed unexpectedly", delivery.pk, exc_info=outcome)
    return [outcomes.get(d.pk, RuntimeError("not sent")) for d in deliveries]


def _sent(delivery: Delivery, external_id: str) -> Delivery:
    _sent_many([(delivery, external_id)])
    return delivery


def _sent_many(sent: list[tuple[Delivery, str]]) -> None:
    """Record deliveries as SENT: one UPDATE, one timeline insert, one channel timestamp each channel."""
    from incidents.services import events_record_bulk

    if not sent:
        return
    now = timezone.now()
    for delivery, external_id in sent:
        delivery.status, delivery.sent_at, delivery.external_id = DeliveryStatus.SENT, now, external_id[:200]
        delivery.last_error, delivery.lease_until, delivery.updated_at = "", None, now
    with transaction.atomic():
        _mark_sent([(d.pk, d.external_id) for d, _ in sent], now)
        Channel.objects.filter(pk__in={d.channel_id for d, _ in sent}).update(last_success_at=now)
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
    """A transient failure: try again after a backoff, or give up once the attempts are spent
    (a receiver that is only rate-limiting us gets NOTIFY_MAX_ATTEMPTS_RATE_LIMITED of them)."""
    limit = settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED if rate_limited else settings.NOTIFY_MAX_ATTEMPTS
    if delivery.attempts >= max(limit, settings.NOTIFY_MAX_ATTEMPTS):
        return _gave_up(delivery, f"{reason} (after {delivery.attempts} attempts)", permanent=False)
    now = timezone.now()
    wait = backoff_seconds(delivery.attempts, retry_after)
    Delivery.objects.filter(pk=delivery.pk).update(
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
            _note(
                delivery.incident,
                EventKind.NOTIFY_FAILED,
                f"{delivery.get_purpose_display()} via {delivery.channel} to {delivery.target} failed: {reason}",
                {"delivery": delivery.pk, "channel": delivery.channel.name},
            )
    if permanent:
        channel_mark_unhealthy(delivery.channel, reason)
    delivery.status, delivery.last_error = DeliveryStatus.GAVE_UP, reason
    return delivery


def channel_mark_unhealthy(channel: Channel, reason: str) -> None:
    """Flag the channel (admin banner) and, the first time, email the admins — unless email is
    the broken channel."""
    now = timezone.now()
    changed = Channel.objects.filter(pk=channel.pk, healthy=True).update(
        healthy=False, unhealthy_reason=reason, unhealthy_since=now
    )
    Channel.objects.filter(pk=channel.pk).update(unhealthy_reason=reason)
    if not changed:
        return
    logger.error("notification channel %s is unhealthy: %s", channel.name, reason)
    if channel.kind == ChannelKind.EMAIL:
        return
    admins = list(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name="Admin"))
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    if admins:
        send_mail(
            f"[ETL Monitor] Notification channel {channel.name} is not working",
            f"Sending through the channel {channel.name} ({channel.get_kind_display()}) failed with an error "
            f"that retrying will not fix:\n\n  {reason}\n\nFix its configuration in the admin "
            f"({settings.ETL_MONITOR_BASE_URL.rstrip('/')}/admin/integrations/channel/{channel.pk}/change/); "
            "saving it marks it healthy again. Deliveries that gave up can be retried from the delivery list.",
            settings.DEFAULT_FROM_EMAIL,
            admins,
            fail_silently=True,
        )


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


# --- people's actions -------------------------------------------------------------------------------


def delivery_retry(*, user: Any, delivery: Delivery) -> Delivery:
    """Send a delivery that gave up (or failed) again, now."""
    from etl_monitor.errors import PermissionRefused, StateConflict

    if not (user and user.is_active and user.has_perm("integrations.change_delivery")):
        raise PermissionRefused("Your role does not allow you to retry deliveries.")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status not in (DeliveryStatus.GAVE_UP, DeliveryStatus.FAILED):
            raise StateConflict(
                f"Delivery #{delivery.pk} is {delivery.get_status_display().lower()}; "
                "only one that failed can be retried."
            )
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def channel_test(*, user: Any, channel: Channel, target: str = "") -> Delivery:
    """Send a test message through the channel now (synchronously) and return the delivery."""
    from etl_monitor.errors import InvalidInput, PermissionRefused

    if not (user and user.is_active and user.has_perm("integrations.change_channel")):
        raise PermissionRefused("Your role does not allow you to test channels.")
    if problem := channel_configured(channel):
        raise InvalidInput({"channel": [f"{channel.name} cannot send: {problem}."]})
    if not target:
        target = {
            ChannelKind.EMAIL: user.email,
            ChannelKind.SLACK: "",
            ChannelKind.SLACK_WEBHOOK: "incoming-webhook",
            ChannelKind.WEBHOOK: channel.url,
            ChannelKind.JIRA: settings.JIRA_PROJECT or "jira",
        }[channel.kind]
    if not target:
        field = "target"
        raise InvalidInput({field: ["Say where to send the test (an email address or a Slack channel)."]})
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


@transaction.atomic
def channel_save(*, user: Any, data: dict[str, Any], channel: Channel | None = None) -> Channel:
    """Create or change a channel; an empty secret keeps the stored one; saving makes it healthy again."""
    from etl_monitor.errors import InvalidInput, PermissionRefused, model_validate

    perm = "integrations.change_channel" if channel else "integrations.add_channel"
    if not (user and user.is_active and user.has_perm(perm)):
        raise PermissionRefused("Your role does not allow you to manage notification channels.")
    allowed = {"name", "kind", "enabled", "url", "secret"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput({name: ["Unknown field."] for name in unknown})
    channel = channel or Channel()
    old_name = channel.name if channel.pk else None
    for name, value in data.items():
        if name == "secret" and not value:
            continue
        setattr(channel, name, value)
    errors: dict[str, list[str]] = {}
    if channel.kind == ChannelKind.WEBHOOK and not channel.url:
        errors["url"] = ["A generic webhook needs a URL."]
    if channel.kind == ChannelKind.SLACK_WEBHOOK and not channel.secret:
        errors["secret"] = ["Paste the incoming-webhook URL here."]
    if channel.kind == ChannelKind.SLACK_WEBHOOK and channel.secret and not channel.secret.startswith("https://"):
        errors["secret"] = ["An incoming-webhook URL starts with https://."]
    model_validate(channel, errors)
    channel.healthy, channel.unhealthy_reason, channel.unhealthy_since = True, "", None
    channel._history_user = user
    channel.save()
    if old_name and old_name != channel.name:
        _rules_rename_channel(user, old_name, channel.name)
    return channel


def _rules_rename_channel(user: Any, old: str, new: str) -> None:
    """A renamed channel stays routed: the rules (and their tiers) that named it name it anew."""

    def renamed(names: list[str]) -> list[str]:
        return [new if name == old else name for name in names or []]

    for rule in NotificationRule.objects.select_for_update(of=("self",)).order_by("pk"):
        tiers = [{**tier, "channels": renamed(tier.get("channels"))} for tier in rule.escalation_tiers or []]
        if old in (rule.channels or []) or tiers != (rule.escalation_tiers or []):
            rule.channels, rule.escalation_tiers = renamed(rule.channels), tiers
            rule._history_user = user
            rule.save(update_fields=["channels", "escalation_tiers", "updated_at"])
