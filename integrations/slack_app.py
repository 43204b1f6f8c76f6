"""The Slack app's way in: the incident message's buttons (interactivity) and the ``/etl-monitor``
command, both signed by Slack with ``SLACK_SIGNING_SECRET`` (off, 404, while it is empty).

Who clicked: a Slack user id maps to a platform user by a verified SLACK contact method; failing
that, by the email of their Slack profile (``users.info``) matching exactly one active user, and the
link is then recorded as a verified contact method so the next click needs one query. Unknown
people are told how to link their account; nothing changes.

What a click does: the same services as the admin's buttons (``incident_acknowledge``,
``incident_resolve``, ``incident_escalate``, ``silence_for_incident``), with ``source="slack"`` on
the timeline, so their permission checks hold here too (a Viewer is refused).

How the message changes in place — one writer, the outbox. Acknowledging or resolving records a
timeline entry, and routing already queues its follow-up (a ``chat.update`` of the incident's
first message, rendered in that transaction: new state, "Acknowledged by alice at 22:01 UTC", the
buttons the new state allows, plus a line in the thread). The click is answered with an empty
HTTP 200 as soon as the service's transaction commits, well within Slack's 3 s; a worker picks
the delivery up at once (the task is queued on commit), so the update shows within the
worker's queue latency. We do not also ``replace_original`` through the ``response_url``: two
writers of one message would race (an older rendering could land last), and the outbox already
retries, records and never double-posts. The ``response_url`` carries only what is for the
clicker alone: ephemeral answers (refusals, "already acknowledged", escalation and silence
confirmations).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from etl_monitor.errors import ServiceError
from incidents.models import Incident, IncidentStatus
from incidents.services import incident_acknowledge, incident_resolve
from incidents.silences import silence_for_incident
from integrations.notifications.payloads import incident_url
from integrations.notifications.routing import incident_escalate
from integrations.text import one_line, slack_escape
from integrations.views import TOO_LARGE, _body
from oncall.models import ContactKind, ContactMethod, Schedule
from oncall.schedules import oncall_users

logger = logging.getLogger(__name__)

# Slack's own window (https://api.slack.com/authentication/verifying-requests-from-slack): a
# request signed longer ago than this, or that far in the future, is a replay.
SIGNATURE_MAX_AGE_SECONDS = 5 * 60
# Slack wants the click answered within 3 s: the profile lookup and the response_url answer, each
# bounded, fit in it with the service's transaction.
USERS_INFO_TIMEOUT = 1.0
RESPONSE_URL_TIMEOUT = 1.5
MINE_LIMIT = 10

NOT_LINKED = (
    "Your Slack account is not linked to an ETL Monitor user, so nothing was done. Ask an "
    "administrator to add your Slack user id ({slack_id}) as a Slack contact method of your user, "
    "or use the same email address in Slack and in ETL Monitor."
)


# --- the signature --------------------------------------------------------------------------------


def request_refusal(body: bytes, headers: Any, *, now: float | None = None) -> str | None:
    """Why a request does not come from Slack (None when it does): no or a malformed timestamp,
    one outside ``SIGNATURE_MAX_AGE_SECONDS`` either way (a replay, even correctly signed), or a
    signature that is not the signing secret's (slack-sdk's ``SignatureVerifier``)."""
    from slack_sdk.signature import SignatureVerifier

    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp.isdigit() or not signature:
        return "no signature or timestamp"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return "timestamp outside the 5-minute window"
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET)
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return "wrong signature"
    return None


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of Slack's form-encoded request (the body the signature covers)."""
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


# --- who clicked ------------------------------------------------------------------------------------


def _web_client() -> Any:
    from slack_sdk import WebClient

    base_url = settings.SLACK_API_BASE_URL.rstrip("/") + "/"
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=base_url, timeout=USERS_INFO_TIMEOUT, retry_handlers=[])


def slack_user_resolve(slack_id: str, *, now: dt.datetime | None = None) -> Any | None:
    """The active platform user behind a Slack user id, or None: the verified SLACK contact
    method's owner; else the one active user whose email is the Slack profile's (asked with
    ``users.info``, case-insensitively), and then that link is recorded as a verified contact
    method. Two users with the email, none, or Slack not answering: None (never a guess)."""
    if not slack_id:
        return None
    linked = (
        ContactMethod.objects.filter(kind=ContactKind.SLACK, value=slack_id, verified_at__isnull=False)
        .select_related("user")
        .first()
    )
    if linked is not None:
        return linked.user if linked.user.is_active else None
    if not settings.SLACK_BOT_TOKEN:
        return None
    from slack_sdk.errors import SlackClientError

    client = _web_client()
    try:
        answer = client.users_info(user=slack_id)
    except (SlackClientError, OSError) as exc:  # Slack refusing or unreachable: not linked, for now
        logger.warning("Slack users.info for %s failed: %s", slack_id, type(exc).__name__)
        return None
    profile = (answer.get("user") or {}).get("profile") or {}
    email = (profile.get("email") or "").strip()
    if not email or (answer.get("user") or {}).get("deleted"):
        return None
    users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
    if len(users) != 1:
        return None
    _link_record(users[0], slack_id, now or timezone.now())
    return users[0]


def _link_record(user: Any, slack_id: str, now: dt.datetime) -> None:
    """Remember that ``slack_id`` is ``user`` (a verified SLACK contact method). A second click
    racing this one may record it first: the link is the same, so that is fine."""
    try:
        with transaction.atomic():
            ContactMethod.objects.update_or_create(
                user=user, kind=ContactKind.SLACK, value=slack_id, defaults={"verified_at": now}
            )
    except IntegrityError:
        logger.info("Slack user %s was linked by a concurrent request", slack_id)


# --- the buttons ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the clicker alone reads (an ephemeral message through the payload's response_url);
    empty when the message update says it all."""

    text: str = ""


def _acknowledge(user: Any, incident: Incident) -> Answer:
    incident_acknowledge(user=user, incident=incident, source="slack")
    return Answer()


def _resolve(user: Any, incident: Incident) -> Answer:
    incident_resolve(user=user, incident=incident, comment="Resolved from Slack.", source="slack")
    return Answer()


def _escalate(user: Any, incident: Incident) -> Answer:
    tier = incident_escalate(user=user, incident=incident, source="slack")
    return Answer(f"Escalated incident #{incident.pk}: tier {tier} of its notification rule is notified.")


def _silence_1h(user: Any, incident: Incident) -> Answer:
    scope = "loader" if incident.loader_id else "rule"
    silence = silence_for_incident(user=user, incident=incident, scope=scope, hours=1, comment="From Slack.")
    what = incident.loader.loader_code if scope == "loader" else f"rule {incident.rule.name}"
    return Answer(
        f"Silenced {what} until {silence.ends_at.astimezone(dt.UTC):%H:%M} UTC: its new incidents are "
        "recorded but notify nobody. Acknowledge the incident to stop its escalation."
    )


ACTIONS = {
    "etl_ack": _acknowledge,
    "etl_resolve": _resolve,
    "etl_escalate": _escalate,
    "etl_silence_1h": _silence_1h,
}


def slack_action_apply(payload: dict[str, Any]) -> Answer:
    """Apply one ``block_actions`` click: who (``slack_user_resolve``), which incident (the
    button's value), and the service of its action_id. Link buttons ("View incident"…) also
    report their clicks: they change nothing. Every refusal is an answer for the clicker alone."""
    actions = payload.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    apply = ACTIONS.get(action.get("action_id", ""))
    if apply is None:
        return Answer()
    slack_id = str((payload.get("user") or {}).get("id") or "")
    user = slack_user_resolve(slack_id)
    if user is None:
        return Answer(NOT_LINKED.format(slack_id=slack_id))
    value = str(action.get("value") or "")
    found = Incident.objects.select_related("loader", "rule")
    incident = found.filter(pk=int(value)).first() if value.isdigit() else None
    if incident is None:
        return Answer(f"Incident {value or '(none)'} does not exist any more.")
    try:
        return apply(user, incident)
    except ServiceError as exc:  # a Viewer's role, "already acknowledged", the last tier…
        return Answer(str(exc))


def response_url_allowed(url: str) -> bool:
    """Slack's response_url is on hooks.slack.com (or on the Slack API address we are configured
    with, e.g. a proxy): a signed payload could still not make us post anywhere else."""
    parts = urlsplit(url)
    api = urlsplit(settings.SLACK_API_BASE_URL)
    if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
        return True
    return (parts.scheme, parts.netloc) == (api.scheme, api.netloc) and bool(parts.netloc)


def ephemeral_send(response_url: str, text: str) -> None:
    """Tell the clicker alone (``response_type: ephemeral``, the original message kept)."""
    from slack_sdk.errors import SlackClientError
    from slack_sdk.webhook import WebhookClient

    if not response_url_allowed(response_url):
        logger.warning("Slack response_url refused: not a Slack address")
        return
    try:
        WebhookClient(response_url, timeout=RESPONSE_URL_TIMEOUT, retry_handlers=[]).send(
            text=text, response_type="ephemeral", replace_original=False
        )
    except (SlackClientError, OSError) as exc:  # the action is done; only the note to the clicker is lost
        logger.warning("Slack response_url answer failed: %s", type(exc).__name__)


# --- the /etl-monitor command -----------------------------------------------------------------------

HELP = (
    "*/etl-monitor* — ETL Monitor from Slack:\n"
    "• `/etl-monitor who [schedule]` — who is on call now (every schedule, or the one named)\n"
    "• `/etl-monitor mine` — the open incidents of the teams you are on call for, and those you acknowledged\n"
    "• `/etl-monitor ack <incident id>` — acknowledge an incident\n"
    "• `/etl-monitor help` — this help"
)


def _slack_names(users: list[Any]) -> dict[int, str]:
    """Each user as Slack shows them: a mention when their Slack id is linked, else their username."""
    ids = dict(
        ContactMethod.objects.filter(user__in=users, kind=ContactKind.SLACK, verified_at__isnull=False).values_list(
            "user_id", "value"
        )
    )
    return {user.pk: f"<@{ids[user.pk]}>" if user.pk in ids else user.get_username() for user in users}


def _title(text: str) -> str:
    return slack_escape(one_line(text))[:150]


def _who(user: Any, args: list[str], now: dt.datetime) -> str:
    schedules = list(Schedule.objects.order_by("name"))
    if args:
        wanted = args[0].lower()
        chosen = [s for s in schedules if wanted in (s.slug.lower(), s.name.lower())]
        if not chosen:
            known = ", ".join(f"`{s.slug}`" for s in schedules) or "none yet"
            return f"No schedule named `{args[0]}`. Schedules: {known}."
        schedules = chosen
    if not schedules:
        return "No on-call schedule exists yet."
    on_call = oncall_users([s.slug for s in schedules], now)
    names = _slack_names([u for people in on_call.values() for u in people])
    lines = [
        f"*{s.name}* (`{s.slug}`): {', '.join(names[u.pk] for u in on_call.get(s.slug, [])) or 'nobody'}"
        for s in schedules
    ]
    return "On call now:\n" + "\n".join(lines)


def _mine(user: Any, args: list[str], now: dt.datetime) -> str:
    """The incidents that are this person's now: those they acknowledged and that are still
    acknowledged, and the open ones of the loaders of teams whose schedule they are on call for."""
    schedules = list(Schedule.objects.filter(team__isnull=False).values_list("slug", "team_id"))
    on_call = oncall_users([slug for slug, _team in schedules], now) if schedules else {}
    teams = {team for slug, team in schedules if any(u.pk == user.pk for u in on_call.get(slug, []))}
    mine = Q(status=IncidentStatus.ACKNOWLEDGED, acknowledged_by=user)
    if teams:
        mine |= Q(status=IncidentStatus.OPEN, loader__owner__in=teams)
    incidents = list(Incident.objects.filter(mine).order_by("-last_seen")[: MINE_LIMIT + 1])
    if not incidents:
        return "Nothing is yours: no incident you acknowledged is still open, and no team you are on call for has one."
    lines = [
        f"• <{incident_url(i)}|#{i.pk}> [{i.severity}] {_title(i.title)} — {i.get_status_display()}"
        for i in incidents[:MINE_LIMIT]
    ]
    more = f"\n…and more: the first {MINE_LIMIT} are shown." if len(incidents) > MINE_LIMIT else ""
    return "Your incidents:\n" + "\n".join(lines) + more


def _ack(user: Any, args: list[str], now: dt.datetime) -> str:
    reference = args[0].lstrip("#") if args else ""
    if not reference.isdigit():
        return "Say which incident: `/etl-monitor ack 42`."
    incident = Incident.objects.filter(pk=int(reference)).first()
    if incident is None:
        return f"There is no incident #{reference}."
    try:
        incident_acknowledge(user=user, incident=incident, source="slack")
    except ServiceError as exc:
        return str(exc)
    return f"Acknowledged incident #{incident.pk}: {_title(incident.title)}."


COMMANDS = {"who": _who, "mine": _mine, "ack": _ack}


def slack_command_answer(fields: dict[str, str], *, now: dt.datetime | None = None) -> str:
    """The answer to ``/etl-monitor <text>`` (the form Slack posts): ``help`` and anything unknown
    get the help; the rest need the caller's Slack account linked (``slack_user_resolve``)."""
    words = fields.get("text", "").split()
    command = COMMANDS.get(words[0].lower()) if words else None
    if command is None:
        return HELP
    user = slack_user_resolve(fields.get("user_id", ""))
    if user is None:
        return NOT_LINKED.format(slack_id=fields.get("user_id", "") or "unknown")
    return command(user, words[1:], now or timezone.now())


def interactivity_payload(fields: dict[str, str]) -> dict[str, Any] | None:
    """The JSON ``payload`` field of an interactivity request, or None when it is not one."""
    try:
        payload = json.loads(fields.get("payload", ""))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


# --- the views ---------------------------------------------------------------------------------------


def _refused(request: HttpRequest, what: str) -> tuple[HttpResponse | None, bytes]:
    """The response refusing a request (404 off, 413 too large, 401 unsigned), or None and the body.
    Refusals are logged with their reason and address, never the body."""
    if not settings.SLACK_SIGNING_SECRET:
        return JsonResponse({"detail": "The Slack app is not configured (SLACK_SIGNING_SECRET)."}, status=404), b""
    raw = _body(request)
    if raw is None:
        return JsonResponse(TOO_LARGE, status=413), b""
    if reason := request_refusal(raw, request.headers):
        logger.warning("Slack %s refused: %s (from %s)", what, reason, request.META.get("REMOTE_ADDR"))
        return JsonResponse({"detail": "Not signed by Slack."}, status=401), b""
    return None, raw


@csrf_exempt
@require_POST
def slack_interactivity(request: HttpRequest) -> HttpResponse:
    """A click on the incident message (``block_actions``): applied at once, answered with an
    empty 200 (the message is updated by the outbox, see the module docstring); what is for the
    clicker alone goes to the payload's response_url."""
    refused, raw = _refused(request, "interactivity")
    if refused is not None:
        return refused
    payload = interactivity_payload(form_fields(raw))
    if payload is None:
        return JsonResponse({"detail": "No interactivity payload."}, status=400)
    if payload.get("type") != "block_actions":
        return HttpResponse(status=200)
    answer = slack_action_apply(payload)
    if answer.text and payload.get("response_url"):
        ephemeral_send(str(payload["response_url"]), answer.text)
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def slack_command(request: HttpRequest) -> HttpResponse:
    """``/etl-monitor …``: answered in the HTTP response, for the caller alone (ephemeral)."""
    refused, raw = _refused(request, "command")
    if refused is not None:
        return refused
    text = slack_command_answer(form_fields(raw))
    return JsonResponse({"response_type": "ephemeral", "text": text})
