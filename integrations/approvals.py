"""Approval news: approvers hear when a loader version waits for them, its makers when it was
approved or rejected — by email, and on Slack when ``APPROVALS_SLACK_CHANNEL`` is set.

The loaders app announces each committed transition (``loaders.services.loader_version_transitioned``)
without knowing who listens; ``IntegrationsConfig.ready`` connects ``on_version_transitioned``,
which queues ``integrations.tasks.approvals_notify`` (by name). The news are a courtesy, not the
record (the version's page and history are): a failure to send is logged, never retried, and never
undoes the transition. Messages name the loader by its code only and carry no contract values, so
no field protection (a HIDDEN name, a secret) can be bypassed by email.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.urls import reverse

from etl_monitor.celery import app as celery_app
from etl_monitor.humanize import local_time
from etl_monitor.metrics import TargetService, http_client_call
from etl_monitor.outage import task_publish
from integrations.models import Channel, ChannelKind
from integrations.notifications.transports import transport_for
from integrations.notifications.transports.email import smtp_call
from integrations.text import one_line, slack_escape
from loaders import services as loader_services
from loaders.models import LoaderVersion

logger = logging.getLogger(__name__)

APPROVALS_NOTIFY_TASK = "integrations.tasks.approvals_notify"
_NEWSWORTHY = (loader_services.ACTION_SUBMIT, loader_services.ACTION_APPROVE, loader_services.ACTION_REJECT)


def on_version_transitioned(sender: Any, versions: list[LoaderVersion], action: str, user: Any, **kwargs: Any) -> None:
    """Queue the news of a committed transition; with the broker away, send them here and now."""
    if action not in _NEWSWORTHY or not versions:
        return
    actor_id = getattr(user, "pk", None)
    if not (settings.APPROVALS_SLACK_CHANNEL or _anyone_to_email(versions, action, actor_id)):
        return  # nobody to tell: no task (and no broker round trip) at all
    args = ([version.pk for version in versions], action, actor_id)
    if not task_publish(celery_app.tasks[APPROVALS_NOTIFY_TASK], args):
        approvals_notify(*args)


def _version_url(version: LoaderVersion) -> str:
    path = reverse("admin:loaders_loaderversion_change", args=[version.pk])
    return settings.ETL_MONITOR_BASE_URL.rstrip("/") + path


def _label(version: LoaderVersion) -> str:
    return f"{version.loader.loader_code} v{version.number}"


def approvers_for(versions: list[LoaderVersion], actor_id: int | None) -> list[Any]:
    """Active people with an email who may approve: the Approver permission (through a role or
    given alone) or superuser, minus whoever wrote or submitted these versions (four-eyes)."""
    permission = Permission.objects.filter(codename="approve_loaderversion", content_type__app_label="loaders")
    writers = {actor_id} | {i for v in versions for i in (v.created_by_id, v.submitted_by_id)}
    return list(
        get_user_model()
        .objects.filter(is_active=True)
        .exclude(email="")
        .filter(Q(is_superuser=True) | Q(groups__permissions__in=permission) | Q(user_permissions__in=permission))
        .exclude(pk__in=[i for i in writers if i is not None])
        .distinct()
        .order_by("pk")
    )


def _anyone_to_email(versions: list[LoaderVersion], action: str, actor_id: int | None) -> bool:
    if action == loader_services.ACTION_SUBMIT:
        return bool(approvers_for(versions, actor_id))
    maker_ids = {i for v in versions for i in (v.submitted_by_id, v.created_by_id) if i is not None and i != actor_id}
    return get_user_model().objects.filter(pk__in=maker_ids, is_active=True).exclude(email="").exists()


def _makers(version: LoaderVersion, actor_id: int | None) -> list[Any]:
    people = {u.pk: u for u in (version.submitted_by, version.created_by) if u is not None}
    return [u for pk, u in people.items() if pk != actor_id and u.is_active and u.email]


def _submitted_text(versions: list[LoaderVersion]) -> tuple[str, str]:
    first = versions[0]
    who = first.submitted_by.get_username() if first.submitted_by else "someone"
    if len(versions) == 1:
        subject = f"[ETL Monitor] {_label(first)} waits for your approval"
        lines = [
            f"{who} submitted {_label(first)} for approval at {local_time(first.submitted_at)}.",
            "",
            f"Their comment: {first.submitted_comment}" if first.submitted_comment else "They left no comment.",
            "",
            f"Review the changes and decide: {_version_url(first)}",
        ]
    else:
        subject = f"[ETL Monitor] {len(versions)} loader versions wait for your approval"
        lines = [f"{who} submitted {len(versions)} loader versions for approval:", ""]
        lines += [f"- {_label(v)}: {_version_url(v)}" for v in versions[:50]]
        if len(versions) > 50:
            lines.append(f"… and {len(versions) - 50} more (the list of versions waiting for your approval).")
    return subject, "\n".join(lines) + "\n"


def _decided_text(version: LoaderVersion, action: str) -> tuple[str, str]:
    who = version.decided_by.get_username() if version.decided_by else "someone"
    outcome = "approved" if action == loader_services.ACTION_APPROVE else "rejected"
    subject = f"[ETL Monitor] {_label(version)} was {outcome} by {who}"
    lines = [f"{who} {outcome} {_label(version)} at {local_time(version.decided_at)}."]
    if action == loader_services.ACTION_APPROVE:
        lines.append("It is now the active version: monitoring follows its contract.")
    if version.decision_comment:
        label = "Reason" if action == loader_services.ACTION_REJECT else "Comment"
        lines += ["", f"{label}: {version.decision_comment}"]
    if action == loader_services.ACTION_REJECT:
        lines += ["", "Start a new draft from it on the loader's page to revise it."]
    lines += ["", _version_url(version)]
    return one_line(subject), "\n".join(lines) + "\n"


def _mail(recipients: Iterable[Any], subject: str, body: str) -> int:
    """One message per person (nobody learns the others' addresses); returns how many went."""
    messages = [
        EmailMessage(one_line(subject), body, settings.DEFAULT_FROM_EMAIL, [person.email]) for person in recipients
    ]
    if not messages:
        return 0
    try:
        connection = get_connection(fail_silently=False)
        with smtp_call(connection):  # one connection, one observation
            return connection.send_messages(messages) or 0
    except Exception as exc:  # noqa: BLE001 — whatever SMTP answers, the transition stands
        logger.warning("approval email %r not sent: %s", subject, exc)
        return 0


def _slack(text: str) -> None:
    """Post ``text`` to APPROVALS_SLACK_CHANNEL: through the platform channel of that name when it
    is an enabled Slack incoming webhook, else with the Slack bot (an enabled Slack channel's
    token, or SLACK_BOT_TOKEN)."""
    target = settings.APPROVALS_SLACK_CHANNEL
    if not target:
        return
    try:
        webhook = Channel.objects.filter(name=target, kind=ChannelKind.SLACK_WEBHOOK, enabled=True).first()
        if webhook is not None:
            from slack_sdk.webhook import WebhookClient

            with http_client_call(TargetService.SLACK) as call:
                response = WebhookClient(webhook.secret, timeout=settings.NOTIFY_HTTP_TIMEOUT).send(text=text)
                call.status = response.status_code
            if response.status_code != 200:
                logger.warning("approval news not posted to %s: HTTP %s", target, response.status_code)
            return
        bot = Channel.objects.filter(kind=ChannelKind.SLACK, enabled=True).first() or Channel(kind=ChannelKind.SLACK)
        client = transport_for(bot).client()
        with http_client_call(TargetService.SLACK):
            client.chat_postMessage(channel=target, text=text)
    except Exception as exc:  # noqa: BLE001 — Slack's errors, a missing token: logged, the transition stands
        logger.warning("approval news not posted to %s: %s", target, exc)


def approvals_notify(version_ids: list[int], action: str, actor_id: int | None) -> None:
    """Tell the people concerned about one transition (of one version, or an import's many)."""
    versions = list(
        LoaderVersion.objects.filter(pk__in=version_ids)
        .select_related("loader", "submitted_by", "created_by", "decided_by")
        .order_by("loader__loader_code")
    )
    if not versions:
        return
    if action == loader_services.ACTION_SUBMIT:
        subject, body = _submitted_text(versions)
        _mail(approvers_for(versions, actor_id), subject, body)
        _slack(slack_escape(subject.removeprefix("[ETL Monitor] ")) + f" — {_version_url(versions[0])}")
        return
    for version in versions:
        subject, body = _decided_text(version, action)
        _mail(_makers(version, actor_id), subject, body)
        _slack(slack_escape(subject.removeprefix("[ETL Monitor] ")) + f" — {_version_url(version)}")
