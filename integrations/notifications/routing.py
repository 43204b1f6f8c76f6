"""Routing and escalation: which incident timeline entries become deliveries, to whom.

``on_incident_event`` receives every timeline entry inside its transaction
(``incident_event_recorded``) and routes it: severity → notification rule → tier →
channels and targets, one Delivery per message queued in the outbox in that same
transaction. Follow-ups (acknowledged, resolved, closed) and reminders go to those who were
told, answering or updating the first message. ``escalations_run`` (beat) notifies the next
tier of incidents nobody acknowledged in time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from etl_monitor.errors import StateConflict
from etl_monitor.permissions import permission_require
from etl_monitor.protection import scrub
from incidents.events import event_record, events_record_bulk
from incidents.models import EventKind, Incident, IncidentEvent, IncidentStatus
from integrations.models import (
    Channel,
    Delivery,
    IncidentNotification,
    NotificationRule,
    Purpose,
)
from integrations.notifications.channels import channel_configured
from integrations.notifications.outbox import (
    delivery_key,
    delivery_new,
    delivery_queue,
    enqueue_after_commit,
    incident_note,
)
from integrations.notifications.payloads import FOLLOW_UP, payloads_batch
from integrations.notifications.transports import Transport, kinds_unrouted, transport_for
from loaders.models import Loader
from oncall.models import ContactKind, ContactMethod
from oncall.schedules import oncall_users

logger = logging.getLogger(__name__)


# Timeline entries this module writes itself: never routed (no loops).
OWN_KINDS = {EventKind.NOTIFIED, EventKind.NOT_NOTIFIED, EventKind.NOTIFY_FAILED}


# What each lifecycle entry becomes, and who hears about it.
FIRST = {EventKind.OPENED: Purpose.OPENED, EventKind.REOPENED: Purpose.REOPENED}


def rule_for(incident: Incident) -> NotificationRule | None:
    """The notification rule of an incident: its team's, else one of its tags', else the severity's."""
    rules = list(NotificationRule.objects.filter(severity=incident.severity, enabled=True))
    loader = incident.loader
    tag_ids = set(loader.tags.values_list("pk", flat=True)) if loader is not None else set()
    return rule_pick(rules, loader, tag_ids)


def rule_pick(rules: list[NotificationRule], loader: Loader | None, tag_ids: set[int]) -> NotificationRule | None:
    """``rule_for`` over rules already read (the enabled ones of the incident's severity) and the
    loader's tag ids."""
    if loader is not None:
        for rule in rules:
            if rule.team_id is not None and rule.team_id == loader.owner_id:
                return rule
        for rule in sorted(rules, key=lambda r: r.pk):
            if rule.tag_id is not None and rule.tag_id in tag_ids:
                return rule
    return next((r for r in rules if r.team_id is None and r.tag_id is None), None)


def _roots(incident: Incident) -> dict[tuple[int, str], Delivery]:
    """The first message of the incident per channel and target (what follow-ups update or answer)."""
    roots: dict[tuple[int, str], Delivery] = {}
    firsts = (Purpose.OPENED, Purpose.REOPENED, Purpose.ESCALATED)
    deliveries = Delivery.objects.filter(incident=incident, purpose__in=firsts, root__isnull=True)
    for d in deliveries.exclude(channel__kind__in=kinds_unrouted()).order_by("pk"):
        roots.setdefault((d.channel_id, d.target), d)
    return roots


def _notify_tier(incident: Incident, event: IncidentEvent, rule: NotificationRule, tier: int, purpose: str) -> int:
    spec = _tier_spec(rule, tier)
    channels = {c.name: c for c in Channel.objects.filter(name__in=spec.get("channels") or [])}
    roots = _roots(incident) if purpose == Purpose.ESCALATED else {}
    oncall = _oncall([spec], event.at)
    fresh, skipped = _tier_deliveries(incident, event, spec, tier, purpose, channels, roots, oncall)
    # A new event's deliveries are new (their keys name the event): one insert for them all.
    for delivery in Delivery.objects.bulk_create(fresh):
        enqueue_after_commit(delivery.pk)
    if skipped:
        incident_note(incident, *_skipped_note(skipped))
    if nobody := _nobody_on_call(spec, oncall):
        _escalate_past_nobody(incident, tier, nobody, event.at)
    return len(fresh)


@dataclass
class OnCall:
    """Who is on call in the schedules some tiers name, at one moment, and where each is emailed:
    their verified email contact methods, else their account's address."""

    people: dict[str, list[Any]] = field(default_factory=dict)  # schedule slug → users
    emails: dict[int, list[str]] = field(default_factory=dict)  # user id → addresses

    def of(self, slugs: list[str]) -> list[Any]:
        return list({user.pk: user for slug in slugs for user in self.people.get(slug, [])}.values())

    def email_of(self, user: Any) -> list[str]:
        return self.emails.get(user.pk) or ([user.email] if user.email else [])


def _oncall(specs: list[dict[str, Any]], at: dt.datetime) -> OnCall:
    """Who is on call at ``at`` in every schedule the tiers name (one read for a whole batch)."""
    slugs = sorted({slug for spec in specs for slug in spec.get("oncall") or []})
    if not slugs:
        return OnCall()
    people = oncall_users(slugs, at)
    emails: dict[int, list[str]] = {}
    user_ids = {user.pk for users in people.values() for user in users}
    verified = ContactMethod.objects.filter(user_id__in=user_ids, kind=ContactKind.EMAIL, verified_at__isnull=False)
    for user_id, address in verified.order_by("pk").values_list("user_id", "value"):
        emails.setdefault(user_id, []).append(address)
    return OnCall(people, emails)


def _nobody_on_call(spec: dict[str, Any], oncall: OnCall) -> list[str]:
    """The tier's schedules when none of them has anyone on call ([] when someone is, or it names none)."""
    slugs = spec.get("oncall") or []
    return [] if oncall.of(slugs) else list(slugs)


def _escalate_past_nobody(incident: Incident, tier: int, schedules: list[str], at: dt.datetime) -> None:
    """Nobody is on call in the tier's schedules: tell the next tier now (recorded on the timeline),
    rather than wait for a timeout nobody can beat. The last tier has no next: that is noted."""
    state = (
        IncidentNotification.objects.select_for_update(of=("self",))
        .select_related("rule", "incident")
        .filter(incident=incident)
        .first()
    )
    names = ", ".join(schedules)
    if state is None or state.rule is None or state.tier != tier or tier >= len(state.rule.tiers()) - 1:
        incident_note(incident, EventKind.NOT_NOTIFIED, f"Nobody on call in {names}, and no further tier to tell.")
        return
    _escalate(state, at, f"Nobody on call in {names}")


def _tier_spec(rule: NotificationRule, tier: int) -> dict[str, Any]:
    tiers = rule.tiers()
    return tiers[min(tier, len(tiers) - 1)]


def _skipped_note(skipped: list[str]) -> tuple[str, str, dict[str, Any]]:
    return EventKind.NOT_NOTIFIED, "Some channels were skipped: " + "; ".join(skipped), {"skipped": skipped}


def _tier_deliveries(
    incident: Incident,
    event: IncidentEvent,
    spec: dict[str, Any],
    tier: int,
    purpose: str,
    channels: dict[str, Channel],
    roots: dict[tuple[int, str], Delivery],
    oncall: OnCall,
) -> tuple[list[Delivery], list[str]]:
    """The (unsaved) deliveries of one tier's channels and targets, and the channels skipped (why).

    A tier naming on-call schedules tells the people on call (``oncall``: who is, per schedule):
    the transports find them in ``people`` (user ids; SMS and voice page their phones as their
    preferences allow at this ``severity`` and time ``at``), and their emails (verified email contact
    methods, else their account's address) join the recipients."""
    skipped: list[str] = []
    fresh: list[Delivery] = []
    if spec.get("oncall"):
        people = oncall.of(spec["oncall"])
        emails = [address for user in people for address in oncall.email_of(user)]
        spec = {
            **spec,
            "people": [user.pk for user in people],
            "recipients": list(dict.fromkeys([*(spec.get("recipients") or []), *emails])),
            "severity": incident.severity,
            "at": event.at,
        }
    for name in spec.get("channels") or []:
        channel = channels.get(name)
        if channel is None:
            skipped.append(f"{name}: no such channel")
            continue
        transport = transport_for(channel)
        if transport.unrouted:
            skipped.append(f"{name}: {transport.unrouted}")
            continue
        if problem := channel_configured(channel):
            skipped.append(f"{name}: {problem}")
            continue
        targets = transport.targets(spec)
        if not targets:
            skipped.append(f"{name}: {_nobody_why(spec, tier)}")
        for target in targets:
            # An escalation to people already told goes in the first message's thread.
            root = roots.get((channel.pk, target))
            fresh.append(
                delivery_new(
                    incident=incident,
                    event=event,
                    channel=channel,
                    target=target,
                    purpose=purpose,
                    tier=tier,
                    root=root,
                )
            )
    return fresh, skipped


def _nobody_why(spec: dict[str, Any], tier: int) -> str:
    if spec.get("oncall"):
        if not spec.get("people"):
            return f"nobody on call in {', '.join(spec['oncall'])} (tier {tier})"
        return f"nobody on call in tier {tier} reachable this way (contact methods, paging preferences)"
    return f"no recipients / Slack channel in tier {tier}"


def on_incident_event(sender: Any, event: IncidentEvent, **kwargs: Any) -> None:
    """Route one timeline entry (inside its transaction) to the notification rules' channels.
    Connected to ``incident_event_recorded`` in ``IntegrationsConfig.ready``; Jira has its own
    receiver (``integrations.jira.on_incident_event``) and its own switch."""
    if event.kind in OWN_KINDS or not settings.NOTIFICATIONS_ENABLED:
        return
    event_route_guarded(event, _route)


def event_route_guarded(event: IncidentEvent, route: Callable[[IncidentEvent], None]) -> None:
    """``route(event)`` in a savepoint of the event's transaction. Never raises into detection or
    the person's action: a routing bug is logged and written on the timeline instead."""
    try:
        with transaction.atomic():
            route(event)
    except Exception as exc:
        logger.exception("routing notifications for incident %s failed", event.incident_id)
        incident_note(
            event.incident, EventKind.NOTIFY_FAILED, scrub(f"Routing failed: {type(exc).__name__}: {exc}")[:500]
        )


def _route(event: IncidentEvent) -> None:
    incident = event.incident
    now = event.at
    if event.kind == EventKind.SUPPRESSED:
        incident_note(incident, *_suppressed_note(event))
    elif event.kind in FIRST:
        if incident.suppressed:
            return  # the SUPPRESSED entry that follows says so
        rule = rule_for(incident)
        if rule is None:
            incident_note(incident, *_no_rule_note(incident))
            return
        if event.kind == EventKind.OPENED:  # a new incident: nothing to read first
            IncidentNotification.objects.create(incident=incident, **_first_state(rule, now))
        else:
            IncidentNotification.objects.update_or_create(incident=incident, defaults=_first_state(rule, now))
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


def _suppressed_note(event: IncidentEvent) -> tuple[str, str]:
    return EventKind.NOT_NOTIFIED, f"Nobody notified: {event.message or 'a silence matches'}."


def _no_rule_note(incident: Incident) -> tuple[str, str]:
    return EventKind.NOT_NOTIFIED, f"Nobody notified: no notification rule for {incident.severity}."


def _first_state(rule: NotificationRule, now: dt.datetime) -> dict[str, Any]:
    """The notification state of an incident as its rule's first tier is told."""
    due = now + dt.timedelta(seconds=rule.escalation_timeout) if rule.escalation_timeout else None
    return {"rule": rule, "tier": 0, "escalations": 0, "last_reminder_at": now, "next_escalation_at": due}


# Entries a batch routes at once; any other kind in a batch is routed one by one.
BATCHED = {EventKind.OPENED, EventKind.SUPPRESSED}


def on_incident_events(sender: Any, events: list[IncidentEvent], **kwargs: Any) -> None:
    """Route a batch of timeline entries (``incident_events_recorded``, e.g. a detection batch
    opening hundreds of incidents) as ``on_incident_event`` routes each, in a few queries: the
    rules, loaders, tags and channels are read once, the notification states and deliveries
    inserted once, the notes written once. Should the batch fail, each entry is routed on its own
    (and a failure noted on its incident's timeline)."""
    if not settings.NOTIFICATIONS_ENABLED:
        return
    batch = [event for event in events if event.kind in BATCHED]
    for event in events:
        if event.kind not in BATCHED:
            on_incident_event(sender, event)
    if not batch:
        return
    try:
        with transaction.atomic(), payloads_batch():  # the field protection is read once for the batch
            _route_opened(batch)
    except Exception:
        logger.exception("routing a batch of %d incident entries failed: routing each on its own", len(batch))
        for event in batch:
            on_incident_event(sender, event)


def _route_opened(events: list[IncidentEvent]) -> None:
    """Route OPENED and SUPPRESSED entries of new incidents (see ``on_incident_events``)."""
    incidents = {event.incident_id: event.incident for event in events}
    loaders = Loader.objects.select_related("owner").in_bulk(
        {incident.loader_id for incident in incidents.values() if incident.loader_id is not None}
    )
    tag_ids: dict[int, set[int]] = {}
    for loader_id, tag_id in Loader.tags.through.objects.filter(loader_id__in=loaders).values_list(
        "loader_id", "tag_id"
    ):
        tag_ids.setdefault(loader_id, set()).add(tag_id)
    rules: dict[str, list[NotificationRule]] = {}
    severities = {incident.severity for incident in incidents.values()}
    for rule in NotificationRule.objects.filter(severity__in=severities, enabled=True):
        rules.setdefault(rule.severity, []).append(rule)
    specs = [spec for group in rules.values() for rule in group for spec in rule.tiers()]
    firsts = [rule.tiers()[0] for group in rules.values() for rule in group]
    oncall_at: dict[dt.datetime, OnCall] = {}  # per moment (a batch is usually one)
    names = {name for spec in specs for name in spec.get("channels") or []}
    channels = {c.name: c for c in Channel.objects.filter(name__in=names)} if names else {}
    states: list[IncidentNotification] = []
    fresh: list[Delivery] = []
    notes: list[tuple[Incident, str, str, dict[str, Any]]] = []
    nobody: list[tuple[Incident, list[str], dt.datetime]] = []
    for event in events:
        incident = incidents[event.incident_id]
        if incident.loader_id is not None:
            incident.loader = loaders[incident.loader_id]  # read once, for the rule and the payloads
        if event.kind == EventKind.SUPPRESSED:
            notes.append((incident, *_suppressed_note(event), {}))
            continue
        if incident.suppressed:
            continue  # the SUPPRESSED entry that follows says so
        rule = rule_pick(rules.get(incident.severity, []), incident.loader, tag_ids.get(incident.loader_id, set()))
        if rule is None:
            notes.append((incident, *_no_rule_note(incident), {}))
            continue
        states.append(IncidentNotification(incident=incident, **_first_state(rule, event.at)))
        spec = _tier_spec(rule, 0)
        if event.at not in oncall_at:
            oncall_at[event.at] = _oncall(firsts, event.at)
        oncall = oncall_at[event.at]
        made, skipped = _tier_deliveries(incident, event, spec, 0, Purpose.OPENED, channels, {}, oncall)
        fresh.extend(made)
        if skipped:
            notes.append((incident, *_skipped_note(skipped)))
        if schedules := _nobody_on_call(spec, oncall):
            nobody.append((incident, schedules, event.at))
    IncidentNotification.objects.bulk_create(states)
    for delivery in Delivery.objects.bulk_create(fresh):
        enqueue_after_commit(delivery.pk)
    if notes:
        events_record_bulk(notes, at=timezone.now())
    for incident, schedules, at in nobody:
        _escalate_past_nobody(incident, 0, schedules, at)


def _to_those_told(
    incident: Incident,
    event: IncidentEvent | None,
    purpose: str,
    *,
    key: str,
    wanted: Callable[[Transport], bool] | None = None,
) -> None:
    """One delivery per channel and target that heard about the incident (its first message is
    the root: Slack updates it or answers in its thread). ``wanted(transport)`` narrows them."""
    for (_channel_id, target), root in _roots(incident).items():
        channel = root.channel
        if channel_configured(channel) or (wanted is not None and not wanted(transport_for(channel))):
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

    Each channel hears the follow-ups its transport lists (``follow_ups``): the Slack bot's
    messages are updated in place (plus a line in their thread) and generic webhooks hear about
    every step; email and Slack webhooks hear only of the resolution."""
    _to_those_told(incident, event, purpose, key=str(event.pk), wanted=lambda told: purpose in told.follow_ups)


def incident_messages_refresh(incident: Incident, reason: str) -> None:
    """Re-render the incident's messages that can be updated in place (the Slack bot's) — e.g. once
    its Jira ticket exists, so the first message gets its "View Jira" button."""
    _to_those_told(incident, None, Purpose.UPDATED, key=reason, wanted=lambda transport: transport.can_update)


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
    _to_those_told(incident, event, Purpose.REMINDER, key=str(event.pk), wanted=lambda told: told.reminders)


def escalations_run(now: dt.datetime | None = None) -> int:
    """Notify the next tier of every open, unacknowledged, unsilenced incident whose timeout passed."""
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
            if _escalate(state, now, f"Not acknowledged within {rule.escalation_timeout} s"):
                done += 1
    return done


def _step_left(state: IncidentNotification) -> bool:
    """A next tier, or (on the last) a repeat ``escalation_repeat`` still allows."""
    last = len(state.rule.tiers()) - 1
    return state.tier < last or max(0, state.escalations - last) < state.rule.escalation_repeat


def incident_escalation_possible(incident: Incident) -> bool:
    """Whether ``incident_escalate`` has a step to take now: the incident is open and its rule has a
    tier (or a repeat) left. Read-only: the incident page shows its Escalate button by this."""
    if incident.status != IncidentStatus.OPEN:
        return False
    state = IncidentNotification.objects.select_related("rule").filter(incident=incident).first()
    return state is not None and state.rule is not None and _step_left(state)


def _escalate(state: IncidentNotification, now: dt.datetime, why: str, actor: Any = None) -> bool:
    """Move the incident (its notification state locked) to its rule's next tier and record it
    (routing notifies the tier); past the last tier, notify the last one again while
    ``escalation_repeat`` allows. False when there is nothing left to escalate to."""
    rule = state.rule
    last = len(rule.tiers()) - 1
    if state.tier < last:
        state.tier += 1
    elif not _step_left(state):
        state.next_escalation_at = None
        state.save(update_fields=["next_escalation_at"])
        return False
    state.escalations += 1
    more = state.tier < last or (state.escalations - last) < rule.escalation_repeat
    timeout = rule.escalation_timeout
    state.next_escalation_at = now + dt.timedelta(seconds=timeout) if more and timeout else None
    state.save(update_fields=["tier", "escalations", "next_escalation_at"])
    event_record(
        state.incident,
        EventKind.ESCALATED,
        at=now,
        actor=actor,
        message=f"{why}: tier {state.tier} notified.",
        data={"tier": state.tier, "escalation": state.escalations},
    )
    return True


@transaction.atomic
def incident_escalate(*, user: Any, incident: Incident, source: str = "") -> int:
    """A person pages the next tier now (the Escalate button in Slack, "press 2" on a call, an SMS
    reply "<code> E"): the same step as a timeout, recorded with who asked. Returns the tier notified."""
    permission_require(user, "incidents.change_incident", "escalate incidents")
    state = (
        IncidentNotification.objects.select_for_update(of=("self",))
        .select_related("rule", "incident")
        .filter(incident=incident)
        .first()
    )
    incident = state.incident if state else incident
    if incident.status != IncidentStatus.OPEN:
        raise StateConflict(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}; only an open one can be escalated."
        )
    if state is None or state.rule is None:
        raise StateConflict(
            f"Incident #{incident.pk} was routed to no notification rule: there is nobody to escalate to."
        )
    via = f" from {source}" if source else ""
    if not _escalate(state, timezone.now(), f"Escalated by {user}{via}", actor=user):
        raise StateConflict(f"Incident #{incident.pk} has reached the last tier of its notification rule.")
    return state.tier
