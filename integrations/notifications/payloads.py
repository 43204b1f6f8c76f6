"""What a notification says: the incident's context and each channel's rendering of it (email
text and HTML, Slack Block Kit, webhook JSON), with field protection applied.

The context holds text as written; each rendering makes it safe for its medium: Slack text goes
through ``slack_escape`` (no ``<!channel>`` ping, no disguised ``<url|label>`` link), HTML through
the templates' autoescaping, an email subject through ``one_line``. The links are ours, their
variable parts percent-encoded where they are made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.template.loader import render_to_string

from etl_monitor.protection import outbound_redact, scrub
from incidents.models import EventKind, Incident, IncidentEvent, IncidentStatus
from integrations.models import (
    Channel,
    ChannelKind,
    Purpose,
)
from integrations.text import one_line, slack_escape

# The follow-ups of a lifecycle entry: told to everyone who heard of the incident, in place where
# the channel can update its message.
FOLLOW_UP = {
    EventKind.ACKNOWLEDGED: Purpose.ACKNOWLEDGED,
    EventKind.RESOLVED: Purpose.RESOLVED,
    EventKind.CLOSED: Purpose.CLOSED,
}


SEVERITY_STYLE = {
    "CRITICAL": ("🔴", "#d32f2f"),
    "HIGH": ("🟠", "#f57c00"),
    "MEDIUM": ("🟡", "#fbc02d"),
    "LOW": ("🟢", "#388e3c"),
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
    """Block Kit for the incident. Every text from the context is escaped (``slack_escape``),
    plain_text included (Slack decodes the three entities there as well); the buttons' addresses
    are ours."""
    esc = slack_escape
    emoji, _colour = SEVERITY_STYLE.get(ctx["severity"], ("⚪", "#9e9e9e"))
    state = "" if ctx["status"] == IncidentStatus.OPEN else f" · *{ctx['status'].title()}*"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": esc(one_line(ctx["title"]))[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity:*\n{emoji} {ctx['severity']}{state}"},
                {"type": "mrkdwn", "text": f"*Service:*\n{esc(ctx['service'])}"},
                {"type": "mrkdwn", "text": f"*Detected:*\n{ctx['detected_at']}"},
                {"type": "mrkdwn", "text": f"*Category:*\n{ctx['category']}"},
            ],
        },
    ]
    if ctx["description"]:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Description:*\n{esc(ctx['description'])}"[:2900]}}
        )
    if ctx["suggestion"]:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Suggested action:*\n{esc(ctx['suggestion'])}"[:2900]},
            }
        )
    if ctx["correlation_id"]:
        correlation = esc(one_line(ctx["correlation_id"])).replace("`", "'")  # stays inside its code span
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Correlation id `{correlation}`"}]})
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
            "subject": one_line(f"[{ctx['severity']}] {HEADLINES[purpose]}{ctx['title']}"),
            "text": render_to_string("notifications/incident_email.txt", template_ctx),
            "html": render_to_string("notifications/incident_email.html", template_ctx),
            "severity": ctx["severity"],
        }
    if channel.kind in (ChannelKind.SLACK, ChannelKind.SLACK_WEBHOOK):
        # The top-level text is mrkdwn too (and what notifications and screen readers show).
        text = slack_escape(one_line(text))
        if incident is None:
            return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
        payload = {"text": text, "blocks": _slack_blocks(ctx, purpose), "update": update}
        if follow_up:
            payload["thread_text"] = slack_escape(follow_up)
        return payload
    event_name = {"TEST": "test"}.get(purpose, purpose.lower())
    return {
        "version": "1",
        "event": f"incident.{event_name}",
        "incident": None if incident is None else {k: v for k, v in ctx.items()},
        "message": follow_up or text,
    }


def payload_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
