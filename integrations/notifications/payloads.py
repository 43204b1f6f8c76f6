"""What a notification says, before a channel renders it: the ``Message`` (its purpose, the
incident's context with field protection applied, the headline and the follow-up line).

Each channel's transport renders the message for its medium (email text and HTML, Slack Block
Kit, webhook JSON, a Jira ticket). The context holds text as written; each rendering makes it
safe for its medium: Slack text goes through ``slack_escape`` (no ``<!channel>`` ping, no
disguised ``<url|label>`` link), HTML through the templates' autoescaping, an email subject
through ``one_line``, Jira's wiki markup through ``wiki_escape``. The links are ours, their
variable parts percent-encoded where they are made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

from django.conf import settings

from etl_monitor.protection import FieldPolicy, outbound_redact, policy_for, scrub
from incidents.models import EventKind, Incident, IncidentEvent
from integrations.models import Purpose

# The follow-ups of a lifecycle entry: told to everyone who heard of the incident, in place where
# the channel can update its message.
FOLLOW_UP = {
    EventKind.ACKNOWLEDGED: Purpose.ACKNOWLEDGED,
    EventKind.RESOLVED: Purpose.RESOLVED,
    EventKind.CLOSED: Purpose.CLOSED,
}


def incident_url(incident: Incident) -> str:
    return f"{settings.ETL_MONITOR_BASE_URL.rstrip('/')}/admin/incidents/incident/{incident.pk}/change/"


def _rison_string(value: str) -> str:
    """A value inside a quoted Rison string (Kibana's URL state), percent-encoded: ``!`` and ``'``
    are Rison's escapes; encoding keeps spaces, ``|`` and ``]`` from ending the link in Slack or
    Jira markup."""
    return quote(value.replace("!", "!!").replace("'", "!'"), safe="")


def _links(incident: Incident) -> dict[str, str]:
    subject = incident.loader.loader_code if incident.loader_id else incident.subject
    links = {"incident": incident_url(incident)}
    if settings.GRAFANA_URL:
        links["dashboard"] = f"{settings.GRAFANA_URL.rstrip('/')}/?var-loader={quote(subject, safe='')}"
    if settings.KIBANA_URL:
        query = _rison_string(incident.correlation_id or subject)
        links["logs"] = f"{settings.KIBANA_URL.rstrip('/')}/app/discover#/?_a=(query:(query_string:(query:'{query}')))"
    if incident.external_url:
        links["jira"] = incident.external_url
    return links


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


@dataclass
class _Batch:
    policy: FieldPolicy  # the outbound protection of loaders
    contexts: dict[int, dict[str, Any]]  # each incident's context, by its pk


_batch: ContextVar[_Batch | None] = ContextVar("payloads_batch", default=None)


@contextmanager
def payloads_batch() -> Iterator[None]:
    """Render a batch of messages (a storm's new incidents, each told on several channels) with
    the field protection read once and each incident's context made once: the incidents do not
    change while their messages are rendered, as in one transaction."""
    token = _batch.set(_Batch(policy_for(None, "loaders.loader"), {}))
    try:
        yield
    finally:
        _batch.reset(token)


def _loader_redact(data: dict[str, Any]) -> dict[str, Any]:
    batch = _batch.get()
    return batch.policy.redact(data) if batch is not None else outbound_redact("loaders.loader", data)


def incident_context(incident: Incident) -> dict[str, Any]:
    """What every message says about an incident; protected loader fields never leave."""
    loader = incident.loader
    service = incident.subject
    owner = ""
    if loader is not None:
        shown = _loader_redact({"name": loader.name, "owner": loader.owner.name if loader.owner_id else ""})
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
    if purpose == Purpose.ESCALATED:  # by a person (the Escalate button), or the rule's timeout
        return f"Escalated{who}." if who else "Not acknowledged in time: escalated."
    if purpose == Purpose.REMINDER:
        return still_firing(ctx)
    return ""


def still_firing(ctx: dict[str, Any]) -> str:
    """The reminder's sentence: how many breaches so far and when the last was seen."""
    count = ctx["occurrences"]
    return f"Still firing: {count} occurrence{'' if count == 1 else 's'}, last seen {ctx['last_seen']}."


@dataclass(frozen=True)
class Message:
    """One message about an incident (or a test, ``incident`` None) before a channel renders it.

    ``update``: the channel edits the incident's first message in place (Slack bot follow-ups).
    The context is read once per message, whatever the rendering asks of it."""

    purpose: str
    incident: Incident | None
    event: IncidentEvent | None = None
    update: bool = False

    @property
    def is_test(self) -> bool:
        return self.incident is None

    @cached_property
    def context(self) -> dict[str, Any]:
        if self.incident is None:
            return {"title": "Test notification", "severity": "LOW"}
        batch = _batch.get()
        if batch is None:
            return incident_context(self.incident)
        if self.incident.pk not in batch.contexts:
            batch.contexts[self.incident.pk] = incident_context(self.incident)
        return batch.contexts[self.incident.pk]

    @property
    def headline(self) -> str:
        """What the message's title starts with ("Resolved: "…)."""
        return HEADLINES.get(self.purpose, "")

    @property
    def text(self) -> str:
        """The message in one line: ``Resolved: [HIGH] SALES-DAILY failed``."""
        if self.incident is None:
            return "ETL Monitor test notification: this channel works."
        return f"{HEADLINES[self.purpose]}[{self.context['severity']}] {self.context['title']}"

    @cached_property
    def follow_up(self) -> str:
        """What happened, for a follow-up ("Acknowledged by alice."); empty for a first message."""
        if self.incident is None:
            return ""
        return _follow_up_text(self.purpose, self.context, self.event)


def payload_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
