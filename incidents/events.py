"""The incident timeline and its domain event.

Every change to an incident is an IncidentEvent written here: detection's (opened, fired again,
reopened, resolved, flapping, suppressed), people's (acknowledged, resolved, closed, commented) and
the integrations' (notified, escalated…). Each entry is announced twice, with ``sender=Incident``
and ``event``:

- ``incident_event_recorded``, inside the transaction that writes the entry: receivers write their
  own rows atomically with it, and one that raises rolls the entry back with the change it belongs
  to. Its receivers today, both connected in ``integrations/apps.py``: notifications
  (``integrations.notifications.routing.on_incident_event``) and Jira
  (``integrations.jira.on_incident_event``), each subscribing for itself. Entries written in bulk
  (``events_record_bulk``: a detection batch opening many incidents, deliveries marked sent) are
  announced once, as a list, with ``incident_events_recorded`` (``events``); the same two modules
  subscribe to it (``on_incident_events``).
- ``incident_event``, once that transaction has committed (``send_robust``: a failing receiver is
  logged, the others still run). Nothing in this codebase subscribes to it: it is the hook
  documented for a deployment's own code (docs/incidents.md, "For developers: the incident hooks").
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal as DjangoSignal
from django.utils import timezone

from incidents.models import Incident, IncidentEvent

logger = logging.getLogger(__name__)

# Sent after commit with ``event`` (an IncidentEvent) for every timeline entry.
incident_event = DjangoSignal()
# Sent inside the transaction that records ``event``: receivers write their own rows (the
# notification outbox) atomically with it. A receiver that raises rolls the event back with it.
incident_event_recorded = DjangoSignal()
# The same for a batch (``events``, a list, in the order written), sent once by ``events_record_bulk``:
# receivers handle the batch in a few queries (a detection storm opens hundreds of incidents).
incident_events_recorded = DjangoSignal()


def event_record(
    incident: Incident,
    kind: str,
    *,
    at: dt.datetime | None = None,
    actor: Any = None,
    message: str = "",
    data: Any = None,
) -> IncidentEvent:
    """Add an entry to an incident's timeline (detection, people's actions, integrations: notified,
    escalated…); ``at`` defaults to now. Announced as described above."""
    event = IncidentEvent.objects.create(
        incident=incident,
        kind=kind,
        at=at or timezone.now(),
        actor=actor if getattr(actor, "pk", None) else None,
        message=message,
        data=data or {},
    )
    transaction.on_commit(lambda: _publish(event))  # before the receivers' own entries are published
    incident_event_recorded.send(sender=Incident, event=event)
    return event


def events_record_bulk(
    entries: list[tuple[Incident | int, str, str, dict[str, Any]]], *, at: dt.datetime
) -> list[IncidentEvent]:
    """Add many timeline entries in one insert: (incident or its id, kind, message, data) each, in
    that order. Announced once for them all: ``incident_events_recorded`` with the list (inside
    the transaction), then ``incident_event`` for each entry after commit."""
    events = IncidentEvent.objects.bulk_create(
        [
            IncidentEvent(
                **({"incident": incident} if isinstance(incident, Incident) else {"incident_id": incident}),
                kind=kind,
                at=at,
                message=message,
                data=data,
            )
            for incident, kind, message, data in entries
        ]
    )
    transaction.on_commit(lambda: [_publish(event) for event in events])
    if events:
        incident_events_recorded.send(sender=Incident, events=events)
    return events


def _publish(event: IncidentEvent) -> None:
    # A failing receiver must not break detection, the person's action or the other receivers.
    for receiver, result in incident_event.send_robust(sender=Incident, event=event):
        if isinstance(result, Exception):
            logger.error("incident_event receiver %s failed: %s", getattr(receiver, "__name__", receiver), result)
