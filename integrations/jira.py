"""Jira: a ticket per incident that warrants one, kept in step both ways.

Out: Jira subscribes to the incident timeline itself (``on_incident_event``): its entries become
deliveries of the ``jira`` channel (``JiraTransport``), sent by the same outbox as notifications
(retries with backoff, Retry-After, permanent errors mark the channel unhealthy). Opening
creates the ticket; acknowledgement, comments, re-fires (at most every
``refire_comment_seconds``) and resolution become comments; resolve/close transition it to
done; a reopen within ``reopen_window_seconds`` reopens it, later a new ticket linked to the
old one is created. A create whose outcome is unknown (timeout) is looked up by its unique
label before it is tried again, so a retry never makes a second ticket.

In: ``/integrations/jira/webhook/`` (see ``webhook_apply``): a ticket moved to done resolves
the incident, comments appear on the timeline, and our own comments echoed back are ignored.
Replays are refused on what Jira signs, the body: its digest is a receipt (a repeat is answered
``duplicate``), and its ``timestamp`` must be within JIRA_WEBHOOK_MAX_AGE_SECONDS (a stale event
is refused, 400: Jira does not retry a 4xx, and retrying a stale event could not help).

Text from incidents and people goes into the ticket through ``wiki_escape``: it shows as written
and cannot form links, images or macros in Jira's wiki markup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import threading
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from etl_monitor.crypto import secret_undecryptable
from etl_monitor.errors import InvalidInput
from etl_monitor.metrics import Outcome, TargetService, http_client_call
from etl_monitor.roles import Role, system_user_get
from incidents.models import ACTIVE_STATUSES, EventKind, Incident, IncidentEvent
from incidents.services import incident_comment, incident_resolve
from integrations.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    JiraSettings,
    JiraWebhookReceipt,
    Purpose,
)
from integrations.notifications.outbox import delivery_queue
from integrations.notifications.payloads import Message, still_firing
from integrations.notifications.routing import event_route_guarded, incident_messages_refresh
from integrations.notifications.transports import Deferred, Permanent, Transient, Transport, transport_register
from integrations.text import one_line, wiki_escape

logger = logging.getLogger(__name__)

# How far ahead of our clock a webhook's signed timestamp may be (clock skew between Jira and us).
FUTURE_SKEW_SECONDS = 300
MARKER = "[ETL Monitor]"  # starts every comment we write: an echo of it is recognised and ignored
ROUTED = {
    EventKind.OPENED: Purpose.OPENED,
    EventKind.REOPENED: Purpose.REOPENED,
    EventKind.ACKNOWLEDGED: Purpose.ACKNOWLEDGED,
    EventKind.COMMENTED: Purpose.COMMENTED,
    EventKind.REFIRED: Purpose.REMINDER,
    EventKind.RESOLVED: Purpose.RESOLVED,
    EventKind.CLOSED: Purpose.CLOSED,
}


class JiraAuth(models.TextChoices):
    """``JIRA_AUTH``: how ETL Monitor signs in to Jira."""

    BASIC = "basic", "Basic: email + API token (Jira Cloud)"
    TOKEN = "token", "Personal access token as a Bearer token (Jira Server / Data Center)"


PAT_SOURCES = "JIRA_PERSONAL_ACCESS_TOKEN or the jira channel's secret"


def jira_personal_access_token(channel: Channel | None = None) -> str:
    """The personal access token of ``JIRA_AUTH=token``: the ``jira`` channel's secret (stored
    encrypted, set in the admin or the API) or else JIRA_PERSONAL_ACCESS_TOKEN. ``channel``: the
    jira channel when the caller holds it (the worker must not read the database)."""
    if channel is None:
        channel = Channel.objects.filter(kind=ChannelKind.JIRA).order_by("pk").first()
    secret = channel.secret if channel is not None else ""
    if secret and not secret_undecryptable(secret):
        return secret
    return settings.JIRA_PERSONAL_ACCESS_TOKEN


def jira_configured(channel: Channel | None = None) -> str:
    """Why Jira cannot be used (empty = it can): off, an unknown JIRA_AUTH, or what the
    connection and the chosen sign-in lack."""
    if not settings.JIRA_ENABLED:
        return "JIRA_ENABLED is off"
    if settings.JIRA_AUTH not in JiraAuth.values:
        return f"JIRA_AUTH is {settings.JIRA_AUTH!r}: use basic (Jira Cloud) or token (Jira Data Center)"
    basic = settings.JIRA_AUTH == JiraAuth.BASIC
    names = ("JIRA_BASE_URL", "JIRA_USERNAME", "JIRA_API_TOKEN", "JIRA_PROJECT") if basic else ("JIRA_BASE_URL",)
    missing = [name for name in names if not getattr(settings, name)]
    if not basic:
        if not jira_personal_access_token(channel):
            missing.append(f"a personal access token for JIRA_AUTH=token ({PAT_SOURCES})")
        if not settings.JIRA_PROJECT:
            missing.append("JIRA_PROJECT")
    return f"not set: {', '.join(missing)}" if missing else ""


def incident_label(incident_id: int) -> str:
    return f"etlm-incident-{incident_id}"


def creation_label(delivery: Delivery) -> str:
    """Unique to one creation attempt series: what a retry looks the ticket up by."""
    return f"etlm-{delivery.key_digest[:20]}"


def browse_url(key: str) -> str:
    return f"{settings.JIRA_BASE_URL.rstrip('/')}/browse/{key}"


# --- routing (inside the incident event's transaction) ----------------------------------------


def on_incident_event(sender: Any, event: IncidentEvent, **kwargs: Any) -> None:
    """Jira's subscription to the incident timeline (``incident_event_recorded``, connected in
    ``IntegrationsConfig.ready`` after the notifications'): the entries a ticket follows become
    Jira deliveries in the entry's transaction. Like notifications, never raises into detection."""
    if event.kind in ROUTED:
        event_route_guarded(event, jira_route)


def on_incident_events(sender: Any, events: list[IncidentEvent], **kwargs: Any) -> None:
    """The same for entries written in bulk (``incident_events_recorded``): each in turn, none
    while Jira is off (as ``jira_route`` would decide for each)."""
    if jira_configured():
        return
    for event in events:
        on_incident_event(sender, event)


def jira_route(event: IncidentEvent) -> None:
    """Turn a timeline entry into a Jira delivery when the incident warrants a ticket."""
    purpose = ROUTED.get(event.kind)
    if purpose is None or jira_configured() or (event.data or {}).get("source") == "jira":
        return  # not for Jira, Jira off, or it came from Jira (no echo)
    channel = Channel.objects.filter(kind=JiraTransport.kind, enabled=True).first()
    if channel is None:
        return
    incident = event.incident
    conf = JiraSettings.current()
    if incident.severity not in conf.severities:
        return
    target = settings.JIRA_PROJECT
    ticket = (
        Delivery.objects.filter(incident=incident, channel=channel, payload__action="create")
        .exclude(status=DeliveryStatus.GAVE_UP)
        .order_by("-pk")
        .first()
    )
    root: Delivery | None = ticket
    if purpose in (Purpose.OPENED, Purpose.REOPENED) and incident.suppressed:
        return  # a silenced incident gets no ticket (the timeline says it was suppressed)
    if purpose == Purpose.OPENED or ticket is None:
        if purpose not in (Purpose.OPENED, Purpose.REOPENED):
            return  # no ticket to follow (the incident was opened before Jira was on)
        purpose, root = Purpose.OPENED, None
    elif purpose == Purpose.REOPENED:
        resolved = (
            incident.events.filter(kind=EventKind.RESOLVED, at__lte=event.at)
            .order_by("-at")
            .values_list("at", flat=True)
        ).first()
        if resolved is None or (event.at - resolved).total_seconds() > conf.reopen_window_seconds:
            purpose, root = Purpose.OPENED, None  # too late to reopen: a new ticket, linked to the old one
    elif purpose == Purpose.REMINDER:
        last = (
            Delivery.objects.filter(incident=incident, channel=channel, purpose=Purpose.REMINDER)
            .order_by("-pk")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is not None and (event.at - last).total_seconds() < conf.refire_comment_seconds:
            return
    delivery_queue(
        incident=incident,
        event=event,
        channel=channel,
        target=target,
        purpose=purpose,
        root=root,
    )


def jira_payload(message: Message) -> dict[str, Any]:
    """What a Jira delivery does, rendered when it is created: the incident's facts as they were
    at the event (the ticket's text, the comment). What the Jira settings decide — the project,
    the issue type, priorities, labels, the correlation field, the transitions — is not in it:
    each attempt reads them afresh (``ticket_fields``, ``JiraTransport.send``), so a retry after
    a settings fix uses the fixed settings."""
    purpose, incident, event = message.purpose, message.incident, message.event
    if incident is None:
        return {"action": "check"}
    ctx = message.context
    who = wiki_escape(event.actor.get_username(), inline=True) if event is not None and event.actor_id else ""
    if purpose == Purpose.OPENED:
        # An incident that already had a ticket (reopened after the window) links the new one to it.
        return {
            "action": "create",
            "ticket": _ticket_facts(ctx),
            "incident": incident.pk,
            "link_to": incident.external_key,
        }
    if purpose == Purpose.REOPENED:
        return {"action": "reopen", "comment": f"{MARKER} Reopened: the condition is back."}
    if purpose == Purpose.ACKNOWLEDGED:
        return {"action": "comment", "comment": f"{MARKER} Acknowledged{' by ' + who if who else ''}."}
    if purpose == Purpose.COMMENTED:
        return {
            "action": "comment",
            "comment": f"{MARKER} {who or 'Someone'} commented: {wiki_escape(event.message if event else '')}",
        }
    if purpose == Purpose.REMINDER:
        return {
            "action": "comment",
            "comment": f"{MARKER} {still_firing(ctx)}",
        }
    if purpose in (Purpose.RESOLVED, Purpose.CLOSED):
        done = "Resolved" if purpose == Purpose.RESOLVED else "Closed"
        how = f" by {who}" if who else (" automatically: the condition is clear" if purpose == Purpose.RESOLVED else "")
        return {"action": "done", "comment": f"{MARKER} {done}{how}."}
    return {
        "action": "comment",
        "comment": f"{MARKER} {message.headline}{wiki_escape(ctx['title'], inline=True)}",
    }


def _ticket_facts(ctx: dict[str, Any]) -> dict[str, Any]:
    """The ticket's text as the incident was at the event, in Jira's wiki markup (REST API v2), and
    the facts the settings map (severity → priority, category → label, the correlation id). Every
    outside text goes through ``wiki_escape``; only the labels, headings, table and our own links
    are markup. The links' addresses are ours: their variable parts are percent-encoded where
    they are made."""
    links = ctx["links"]
    lines = [
        f"*Severity:* {ctx['severity']}",
        f"*Detected at:* {ctx['detected_at']}",
        f"*Affected service:* {wiki_escape(ctx['service'], inline=True)}",
        f"*Category:* {ctx['category']}",
        "",
        "h3. Description",
        wiki_escape(ctx["description"]) or "—",
    ]
    if ctx["impact"]:
        lines += ["", "h3. Impact", wiki_escape(ctx["impact"])]
    if ctx["suggestion"]:
        lines += ["", "h3. Suggested resolution", wiki_escape(ctx["suggestion"])]
    if ctx["correlation_id"]:
        lines += ["", f"*Correlation id:* {{{{{wiki_escape(ctx['correlation_id'], inline=True)}}}}}"]
    link_parts = [f"[Incident in ETL Monitor|{links['incident']}]"]
    if links.get("dashboard"):
        link_parts.append(f"[Dashboard|{links['dashboard']}]")
    if links.get("logs"):
        link_parts.append(f"[Logs|{links['logs']}]")
    lines += ["", "h3. Links", " · ".join(link_parts)]
    if ctx["metrics"]:
        lines += ["", "h3. Related metrics", "||Metric||Value||"]
        lines += [
            f"|{wiki_escape(str(k), inline=True)}|{wiki_escape(str(v), inline=True)}|"
            for k, v in ctx["metrics"].items()
        ]
    return {
        # The summary is plain text in Jira (not wiki markup), but one line.
        "summary": one_line(f"[{ctx['severity']}] {ctx['title']}")[:250],
        "description": "\n".join(lines)[:30000],
        "severity": ctx["severity"],
        "category": ctx["category"],
        "correlation_id": ctx["correlation_id"] or "",
    }


def ticket_fields(payload: dict[str, Any], conf: JiraSettings) -> dict[str, Any]:
    """The fields of a new ticket: the delivery's facts laid out by the settings as they are now
    (``JIRA_PROJECT`` and the Jira settings). A payload queued before the facts were kept apart
    carries its fields as rendered then."""
    if "ticket" not in payload:
        return dict(payload["fields"])
    ticket = payload["ticket"]
    labels = [*conf.labels, ticket["category"].lower(), incident_label(payload["incident"])]
    fields: dict[str, Any] = {
        "project": {"key": settings.JIRA_PROJECT},
        "summary": ticket["summary"],
        "description": ticket["description"],
        "issuetype": {"name": conf.issue_type},
        "labels": sorted({label.replace(" ", "-") for label in labels if label}),
    }
    if priority := conf.priorities.get(ticket["severity"]):
        fields["priority"] = {"name": priority}
    if conf.correlation_field and ticket["correlation_id"]:
        fields[conf.correlation_field] = one_line(ticket["correlation_id"])
    return fields


# --- the transport (in the worker) --------------------------------------------------------------

_client_lock = threading.Lock()
_client: tuple[tuple[str, ...], Any] | None = None


def jira_client(channel: Channel | None = None) -> Any:
    """One client per process and configuration (building one asks Jira for its server info),
    signed in as JIRA_AUTH says: basic (``JIRA_USERNAME`` + ``JIRA_API_TOKEN``) or a personal
    access token as ``Authorization: Bearer`` (the jira library's ``token_auth``). The
    credentials stay in this process's memory; nothing logs them."""
    global _client
    from jira import JIRA

    if settings.JIRA_AUTH == JiraAuth.TOKEN:
        auth: dict[str, Any] = {"token_auth": jira_personal_access_token(channel)}
    else:
        auth = {"basic_auth": (settings.JIRA_USERNAME, settings.JIRA_API_TOKEN)}
    config = (settings.JIRA_BASE_URL, repr(sorted(auth.items())), str(settings.JIRA_TIMEOUT))
    with _client_lock:
        if _client is None or _client[0] != config:
            client = JIRA(
                server=settings.JIRA_BASE_URL,
                max_retries=0,  # the outbox retries, knowing what was sent
                timeout=settings.JIRA_TIMEOUT,
                **auth,
            )
            _client = (config, client)
        return _client[1]


def _credentials_hint() -> str:
    if settings.JIRA_AUTH == JiraAuth.TOKEN:
        return f"check the personal access token ({PAT_SOURCES})"
    return "check JIRA_USERNAME/JIRA_API_TOKEN"


def _error(exc: Exception, *, doing: str) -> Exception:
    """Classify a failure: 429/5xx/timeouts are transient; credentials, project, fields are not."""
    from jira.exceptions import JIRAError
    from requests import RequestException

    if isinstance(exc, JIRAError):
        status = exc.status_code or 0
        text = (exc.text or "").strip()[:300]
        if status == 429:
            headers = getattr(exc.response, "headers", None) or {}
            retry_after = headers.get("Retry-After")
            seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            return Transient(f"Jira rate limit while {doing}", retry_after=seconds, rate_limited=True)
        if status >= 500 or status in (0, 408):
            return Transient(f"Jira {status or 'unreachable'} while {doing}: {text}")
        if status in (401, 403):
            return Permanent(f"Jira refused the credentials ({status}) while {doing}: {_credentials_hint()}")
        return Permanent(f"Jira {status} while {doing}: {text}")
    if isinstance(exc, RequestException | OSError):
        return Transient(f"Jira unreachable while {doing}: {type(exc).__name__}")
    return exc


def _refusal_outcome(exc: BaseException) -> Outcome | None:
    """A ``Permanent`` of our own, raised on what Jira answered (no such transition, a failed
    connection check), is Jira refusing what we ask: ``client_error``. None: go by the status."""
    return Outcome.CLIENT_ERROR if isinstance(exc, Permanent) and exc.__cause__ is None else None


@transport_register
class JiraTransport(Transport):
    """Jira as a channel: each delivery creates, comments on or transitions the incident's ticket
    (its payload says which), through the JIRA_* settings; the channel row only switches it."""

    kind = ChannelKind.JIRA
    unrouted = "Jira tickets follow the Jira settings, not notification rules"
    conf: JiraSettings | None = None  # the Jira settings, read by prepare() before sending

    def prepare(self) -> None:
        self.conf = JiraSettings.current()

    def _conf(self) -> JiraSettings:
        if self.conf is None:
            self.prepare()
        return self.conf

    def configured(self) -> str | None:
        return jira_configured(self.channel) or None

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return []  # tickets follow the Jira settings (jira_route), not notification rules

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return settings.JIRA_PROJECT or "jira"

    def render(self, message: Message) -> dict[str, Any]:
        return jira_payload(message)

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """One after another (Jira rate-limits per user); after a 429 the rest of the batch waits
        the same Retry-After instead of adding to the limit."""
        outcomes: dict[int, str | Exception] = {}
        limited: Transient | None = None
        for delivery in deliveries:
            if limited is not None:
                outcomes[delivery.pk] = Deferred(limited.reason, retry_after=limited.retry_after, rate_limited=True)
                continue
            try:
                outcomes[delivery.pk] = self.send(delivery)
            except Exception as exc:  # noqa: BLE001 — recorded per delivery
                outcomes[delivery.pk] = exc
                if isinstance(exc, Transient) and exc.rate_limited:
                    limited = exc
        return outcomes

    def send(self, delivery: Delivery) -> str:
        if problem := jira_configured(self.channel):
            raise Permanent(f"Jira is not configured: {problem}")
        # One observation per send, however many requests it takes (search, create, link; or
        # transition, comment, transition): the outcome is that of the request that failed, if any.
        with http_client_call(TargetService.JIRA, classify=_refusal_outcome):
            return self._send(delivery)

    def _send(self, delivery: Delivery) -> str:
        payload = delivery.payload
        action = payload.get("action")
        try:
            client = jira_client(self.channel)
        except Exception as exc:
            raise _error(exc, doing="connecting") from exc
        if action == "check":
            checks = connection_check(client, self._conf(), self.channel)
            problems = [f"{name}: {detail}" for name, ok, detail in checks if not ok]
            if problems:
                raise Permanent("; ".join(problems))
            return "check:ok"
        if action == "create":
            return self._create(client, delivery)
        key = delivery.root.external_id if delivery.root else ""
        if not key:
            raise Permanent("no ticket to update (its creation failed)", channel_fault=False)
        conf = self._conf()
        try:
            if action == "reopen":
                self._transition(client, key, conf.reopen_transition, want_done=False)
            comment = client.add_comment(key, payload["comment"])
            if action == "done":
                self._transition(client, key, conf.done_transition, want_done=True)
        except (Transient, Permanent):
            raise
        except Exception as exc:
            raise _error(exc, doing=f"updating {key}") from exc
        return f"{key}#comment-{getattr(comment, 'id', '')}"

    def _create(self, client: Any, delivery: Delivery) -> str:
        label = creation_label(delivery)
        fields = ticket_fields(delivery.payload, self._conf())
        fields["labels"] = [*fields["labels"], label]
        try:
            if delivery.attempts > 1 or delivery.last_error:
                # An earlier attempt may have created it (a timeout after Jira stored it): look first
                # (last_error: an admin's retry starts the attempts again but keeps the error).
                found = client.search_issues(f'labels = "{label}"', maxResults=1, fields="key")
                if found:
                    return found[0].key
            issue = client.create_issue(fields=fields, prefetch=False)
        except Exception as exc:
            raise _error(exc, doing="creating the ticket") from exc
        if link_to := delivery.payload.get("link_to"):
            try:
                client.create_issue_link("Relates", issue.key, link_to)
            except Exception:  # noqa: BLE001 — the ticket exists; a missing link is not worth a retry
                logger.warning("could not link Jira ticket %s to %s", issue.key, link_to)
        return issue.key

    def _transition(self, client: Any, key: str, wanted: str, *, want_done: bool) -> None:
        available = client.transitions(key)
        match = next((t for t in available if wanted in (t["id"], t["name"])), None)
        if match is None:
            issue = client.issue(key, fields="status")
            category = issue.fields.status.statusCategory.key
            if (category == "done") == want_done:
                return  # already there (e.g. someone moved it in Jira)
            names = ", ".join(f"{t['name']} ({t['id']})" for t in available) or "none"
            raise Permanent(f"{key}: no transition {wanted!r} available (available: {names})")
        client.transition_issue(key, match["id"])

    def recorded(self, delivery: Delivery, external_id: str) -> None:
        """The ticket exists: its key and URL go on the incident, and the incident's Slack messages
        are updated in place to show the "View Jira" button."""
        if delivery.payload.get("action") == "create" and delivery.incident_id:
            Incident.objects.filter(pk=delivery.incident_id).update(
                external_key=external_id[:50], external_url=browse_url(external_id)
            )
            incident_messages_refresh(Incident.objects.get(pk=delivery.incident_id), f"jira-{external_id}")


def connection_check(
    client: Any = None, conf: JiraSettings | None = None, channel: Channel | None = None
) -> list[tuple[str, bool, str]]:
    """Every check of the "test connection" action: (what, passed, detail — what is wrong if not),
    against the settings as they are now (``conf`` and the jira ``channel``: already read, in the
    worker)."""
    conf = conf or JiraSettings.current()
    issue_type, done = conf.issue_type, conf.done_transition
    if problem := jira_configured(channel):
        return [("configuration", False, problem)]
    results: list[tuple[str, bool, str]] = [
        ("configuration", True, f"{settings.JIRA_BASE_URL}, project {settings.JIRA_PROJECT}")
    ]
    try:
        client = client or jira_client(channel)
        info = client.server_info()
        results.append(("server", True, f"{info.get('serverTitle', 'Jira')} {info.get('version', '')}".strip()))
        me = client.myself()
        results.append(("credentials", True, f"signed in as {me.get('displayName') or me.get('emailAddress')}"))
    except Exception as exc:  # noqa: BLE001
        return [*results, ("server and credentials", False, str(_error(exc, doing="signing in")))]
    try:
        project = client.project(settings.JIRA_PROJECT)
    except Exception as exc:  # noqa: BLE001
        return [*results, ("project", False, f"{settings.JIRA_PROJECT}: {_error(exc, doing='reading the project')}")]
    results.append(("project", True, f"{project.key} — {project.name}"))
    types = [t.name for t in getattr(project, "issueTypes", [])]
    ok = issue_type in types
    results.append(
        ("issue type", ok, issue_type if ok else f"{issue_type!r} is not an issue type of {project.key}: {types}")
    )
    if conf.correlation_field:
        try:
            ok = conf.correlation_field in {f["id"] for f in client.fields()}
        except Exception as exc:  # noqa: BLE001 — a check reports, it never crashes the admin page
            return [*results, ("correlation field", False, str(_error(exc, doing="reading the fields")))]
        detail = conf.correlation_field if ok else f"no field {conf.correlation_field} in this Jira"
        results.append(("correlation field", ok, detail))
    try:
        label = (conf.labels or ["etl-monitoring"])[0]
        sample = client.search_issues(f'project = {settings.JIRA_PROJECT} AND labels = "{label}"', maxResults=1)
    except Exception as exc:  # noqa: BLE001
        return [*results, ("search", False, str(_error(exc, doing="searching")))]
    if not sample:
        results.append(("transitions", True, "no ticket yet to check them on; they are looked up per ticket by name"))
        return results
    try:
        available = client.transitions(sample[0].key)
        category = client.issue(sample[0].key, fields="status").fields.status.statusCategory.key
    except Exception as exc:  # noqa: BLE001
        return [*results, ("done transition", False, str(_error(exc, doing=f"reading {sample[0].key}")))]
    names = {t["name"] for t in available} | {t["id"] for t in available}
    ok = done in names or category == "done"
    detail = (
        f"{done!r} on {sample[0].key}" if ok else f"{done!r} is not a transition of {sample[0].key}: {sorted(names)}"
    )
    results.append(("done transition", ok, detail))
    return results


# --- the webhook (in) ------------------------------------------------------------------------


def signature_valid(raw: bytes, *, header_signature: str, given_secret: str) -> bool:
    """Jira Cloud signs with ``X-Hub-Signature: sha256=<HMAC of the body>`` when the webhook has a
    secret. A sender that cannot sign (Jira Data Center without a secret field, Jira Automation, a
    proxy) gives the secret itself, in a header or in the URL (``?secret=``). When a signature is
    given only it counts. Both are compared in constant time."""
    secret = settings.JIRA_WEBHOOK_SECRET
    if not secret:
        return False
    if header_signature:
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header_signature.strip(), expected)
    return bool(given_secret) and hmac.compare_digest(given_secret.encode(), secret.encode())


def secret_given(*, header: str, authorization: str, query: str) -> str:
    """The shared secret as the sender gave it: ``X-ETL-Monitor-Secret``, ``Authorization: Bearer``,
    or, last, ``?secret=`` (kept for Jira Data Center; a query string ends up in access logs)."""
    scheme, _, token = authorization.strip().partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    return header.strip() or bearer or query


def _event_time(payload: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """The event's ``timestamp`` (milliseconds, inside the signed body) if it is within the window;
    InvalidInput naming ``timestamp`` otherwise. Without it a captured event could be replayed
    once its receipt is pruned."""
    value = payload.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problem = "required" if value is None else "must be a number"
        raise InvalidInput(
            {"timestamp": [f"{problem}: Jira's event time in milliseconds since 1970, as Jira sends it"]},
            "Not a usable Jira event time.",
        )
    age = now.timestamp() - value / 1000
    max_age = settings.JIRA_WEBHOOK_MAX_AGE_SECONDS
    if age > max_age:
        raise InvalidInput(
            {
                "timestamp": [
                    f"the event is {age:,.0f} s old; events older than {max_age} s "
                    "(JIRA_WEBHOOK_MAX_AGE_SECONDS) are refused as possible replays"
                ]
            },
            "Stale event.",
        )
    if -age > FUTURE_SKEW_SECONDS:
        raise InvalidInput(
            {
                "timestamp": [
                    f"the event is {-age:,.0f} s in the future; more than {FUTURE_SKEW_SECONDS} s ahead of "
                    "this server's clock is refused (check the clocks of Jira and ETL Monitor)"
                ]
            },
            "Event from the future.",
        )
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def webhook_apply(
    payload: dict[str, Any], *, delivery_id: str, raw: bytes, now: dt.datetime | None = None
) -> dict[str, str]:
    """Apply one Jira webhook delivery. A body already received (its SHA-256), or a delivery
    identifier already received, changes nothing: ``duplicate``. An event outside the time window
    raises InvalidInput (``timestamp``) and leaves no receipt."""
    now = now or timezone.now()
    event = str(payload.get("webhookEvent") or "")
    issue = payload.get("issue") or {}
    key = str(issue.get("key") or "") if isinstance(issue, dict) else ""
    try:
        event_at = _event_time(payload, now)
    except InvalidInput:
        logger.warning("Jira webhook refused: event time outside the window (%s %s)", event[:100], key[:50])
        raise
    digest = hashlib.sha256(raw).hexdigest()
    # The receipt and the change commit together: a change that fails leaves no receipt, so
    # Jira's retry of the same delivery applies it then.
    with transaction.atomic():
        try:
            with transaction.atomic():
                receipt = JiraWebhookReceipt.objects.create(
                    key=(delivery_id or digest)[:200],
                    body_sha256=digest,
                    event_at=event_at,
                    event=event[:100],
                    issue_key=key[:50],
                )
        except IntegrityError:
            return {"status": "duplicate"}
        incident = Incident.objects.filter(external_key=key).order_by("-pk").first() if key else None
        if incident is None:
            outcome = {"status": "ignored", "reason": f"no incident has ticket {key or '(none)'}"}
        else:
            outcome = _webhook_change(event, payload, incident, system_user_get("jira", Role.OPERATOR))
        receipt.outcome = outcome.get("reason", outcome["status"])[:300]
        receipt.save(update_fields=["outcome"])
    return outcome


def jira_receipts_prune(now: dt.datetime | None = None) -> int:
    """Delete receipts older than JIRA_WEBHOOK_RECEIPT_DAYS, but never one whose body could still
    pass the time window (JIRA_WEBHOOK_MAX_AGE_SECONDS after its event, which is at most
    FUTURE_SKEW_SECONDS after its receipt): a pruned body sent again is refused as stale, never
    applied twice. Returns how many were deleted."""
    now = now or timezone.now()
    keep = max(
        dt.timedelta(days=settings.JIRA_WEBHOOK_RECEIPT_DAYS),
        dt.timedelta(seconds=settings.JIRA_WEBHOOK_MAX_AGE_SECONDS + FUTURE_SKEW_SECONDS),
    )
    deleted, _ = JiraWebhookReceipt.objects.filter(received_at__lt=now - keep).delete()
    return deleted


def _is_ours(author: dict[str, Any], body: str) -> bool:
    who = {str(author.get(k) or "") for k in ("emailAddress", "name", "accountId")}
    return body.lstrip().startswith(MARKER) or (bool(settings.JIRA_USERNAME) and settings.JIRA_USERNAME in who)


def _webhook_change(event: str, payload: dict[str, Any], incident: Incident, jira_user: Any) -> dict[str, str]:
    """What one Jira event changes on the incident (as the ``jira`` system user, marked source=jira)."""
    actor = (payload.get("user") or {}).get("displayName") or "someone"
    if event == "comment_created":
        comment = payload.get("comment") or {}
        body = str(comment.get("body") or "")
        author = comment.get("author") or {}
        if _is_ours(author, body):
            return {"status": "ignored", "reason": "our own comment echoed back"}
        name = author.get("displayName") or actor
        incident_comment(user=jira_user, incident=incident, text=f"{name} in Jira: {body}", source="jira")
        return {"status": "applied", "reason": "comment added to the timeline"}
    if event == "jira:issue_updated":
        if _is_ours(payload.get("user") or {}, ""):
            # Our own transition (done/reopen) echoed back; arriving late it would undo a reopen.
            return {"status": "ignored", "reason": "our own change echoed back"}
        items = (payload.get("changelog") or {}).get("items") or []
        status = ((payload.get("issue") or {}).get("fields") or {}).get("status") or {}
        category = (status.get("statusCategory") or {}).get("key")
        changed = {item.get("field"): item for item in items}
        if "status" in changed and category == "done" and incident.status in ACTIVE_STATUSES:
            incident_resolve(
                user=jira_user,
                incident=incident,
                comment=f"Resolved in Jira by {actor} ({changed['status'].get('toString') or status.get('name')}).",
                source="jira",
            )
            return {"status": "applied", "reason": "incident resolved"}
        if "assignee" in changed:
            text = f"Assigned in Jira to {changed['assignee'].get('toString') or 'nobody'} by {actor}."
            incident_comment(user=jira_user, incident=incident, text=text, source="jira")
            return {"status": "applied", "reason": "assignment noted"}
        if "status" in changed:
            if (category == "done") != (incident.status in ACTIVE_STATUSES):
                return {"status": "ignored", "reason": "the ticket's status agrees with the incident"}
            text = f"Status in Jira: {changed['status'].get('toString')} (by {actor}); the incident stays resolved."
            incident_comment(user=jira_user, incident=incident, text=text, source="jira")
            return {"status": "applied", "reason": "status noted"}
        return {"status": "ignored", "reason": "no change of interest"}
    return {"status": "ignored", "reason": f"event {event or '(none)'} not handled"}
