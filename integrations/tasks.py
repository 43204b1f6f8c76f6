"""Integration tasks (notifications, statistics capture): thin wrappers, safe to run twice."""

import logging

from celery import shared_task

from integrations.approvals import approvals_notify
from integrations.jira import jira_receipts_prune
from integrations.notifications import outbox, routing
from integrations.sources.captures import captures_run
from integrations.twilio_webhooks import twilio_receipts_prune

logger = logging.getLogger(__name__)


@shared_task(name="integrations.tasks.delivery_send", ignore_result=True, acks_late=True)
def delivery_send_task(delivery_id: int) -> None:
    """Send one delivery (skipped when it is not due or another worker is sending it)."""
    outbox.delivery_send(delivery_id)


@shared_task(name="integrations.tasks.deliveries_send", ignore_result=True, acks_late=True)
def deliveries_send_task(delivery_ids: list[int]) -> None:
    """Send a batch of deliveries created together (those not due or taken by another worker are skipped)."""
    outbox.deliveries_send(delivery_ids)


@shared_task(name="integrations.tasks.deliveries_recover", ignore_result=True)
def deliveries_recover_task() -> None:
    """The outbox sweep: deliveries whose worker died mid-send, and due ones whose task was lost."""
    outbox.deliveries_recover()


@shared_task(name="integrations.tasks.escalations_run", ignore_result=True)
def escalations_run_task() -> None:
    """Notify the next tier of incidents nobody acknowledged in time."""
    routing.escalations_run()


@shared_task(name="integrations.tasks.captures_run", ignore_result=True, acks_late=True)
def captures_run_task() -> None:
    """Capture the statistics of the bucket that just ended (idempotent per bucket: a retry or a
    second scheduler stores nothing twice)."""
    for result in captures_run():
        if result.status == "failed":
            logger.warning("capture %s: %s", result.capture, result.error)


@shared_task(name="integrations.tasks.jira_receipts_prune", ignore_result=True)
def jira_receipts_prune_task() -> None:
    """Drop Jira webhook receipts past their retention (never one a replay could still use)."""
    jira_receipts_prune()


@shared_task(name="integrations.tasks.twilio_receipts_prune", ignore_result=True)
def twilio_receipts_prune_task() -> None:
    """Drop Twilio webhook receipts no replay could still use (their pages can no longer be answered)."""
    twilio_receipts_prune()


@shared_task(name="integrations.tasks.approvals_notify", ignore_result=True)
def approvals_notify_task(version_ids: list[int], action: str, actor_id: int | None) -> None:
    """Tell approvers a loader version waits for them, or its makers that it was decided (never
    retried: the news are a courtesy, the version's page is the record)."""
    approvals_notify(version_ids, action, actor_id)
