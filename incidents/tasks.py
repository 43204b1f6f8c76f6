"""Detection tasks: thin wrappers around incidents.detection, safe to run twice; and
``failure_reported``, which enqueues the fast path when ingestion stores a failure."""

from celery import shared_task
from django.conf import settings
from django.db import transaction

from etl_monitor.outage import task_publish
from incidents.backtest_jobs import backtest_job_run
from incidents.backtest_jobs import backtest_jobs_cleanup as jobs_cleanup
from incidents.detection import rule_evaluate_claimed, rules_due, rules_evaluate_claimed, rules_for_loader


@shared_task(name="incidents.tasks.detection_tick", ignore_result=True)
def detection_tick() -> int:
    """Enqueue the rules whose interval has elapsed, in batches of DETECTION_BATCH_SIZE.

    A batch shares its reads and writes (see ``rules_evaluate``); several batches run on
    several workers at once. A task not started before the next ticks expires: the rule is
    still due then and is enqueued again, so a stopped worker leaves no backlog behind.
    """
    due = list(rules_due().order_by("pk").values_list("pk", flat=True))
    size = max(1, settings.DETECTION_BATCH_SIZE)
    for start in range(0, len(due), size):
        rules_evaluate_task.apply_async((due[start : start + size],), expires=settings.DETECTION_TASK_EXPIRES_SECONDS)
    return len(due)


@shared_task(name="incidents.tasks.rules_evaluate", ignore_result=True, acks_late=True)
def rules_evaluate_task(rule_ids: list[int]) -> None:
    """Evaluate a batch of due rules; a rule another worker holds, or one another tick's task
    evaluated meanwhile (no longer due), is skipped (SELECT … FOR UPDATE SKIP LOCKED)."""
    rules_evaluate_claimed(rule_ids=rule_ids, only_due=True)


@shared_task(name="incidents.tasks.rule_evaluate", ignore_result=True, acks_late=True)
def rule_evaluate_task(rule_id: int) -> None:
    """Evaluate one rule (kept for messages queued by earlier versions, and for one-off use)."""
    rule_evaluate_claimed(rule_id=rule_id)


@shared_task(name="incidents.tasks.rules_evaluate_for_loader", ignore_result=True, acks_late=True)
def rules_evaluate_for_loader(loader_id: int, rule_ids: list[int] | None = None, attempt: int = 0) -> None:
    """The fast path: a FAILED run or signal just arrived; evaluate the transaction rules that watch it.

    A rule another worker is evaluating right now is tried again a second later (a few
    times), so the failure is not left waiting for that rule's next interval.
    """
    wanted = rule_ids if rule_ids is not None else rules_for_loader(loader_id)
    if not wanted:
        return
    done = {report.rule_id for report in rules_evaluate_claimed(rule_ids=wanted, loader_id=loader_id)}
    busy = [rule_id for rule_id in wanted if rule_id not in done]
    if busy and attempt < 5:
        rules_evaluate_for_loader.apply_async(
            (loader_id, busy, attempt + 1), countdown=1, expires=settings.DETECTION_TASK_EXPIRES_SECONDS
        )


@shared_task(name="incidents.tasks.backtest_run", ignore_result=True, acks_late=True)
def backtest_run(job_id: str) -> None:
    """Run a queued rule backtest (a finished job is left alone; a redelivered one runs again)."""
    backtest_job_run(job_id=job_id)


@shared_task(name="incidents.tasks.backtest_jobs_cleanup")
def backtest_jobs_cleanup() -> int:
    """Fail backtest jobs the queue lost and delete old ones; returns how many."""
    return jobs_cleanup()


def failure_reported(loader_id: int) -> None:
    """Called inside ingestion's transaction (through ``signals_app.services.failure_ingested``,
    connected in ``IncidentsConfig.ready``): once committed, evaluate the loader's rules right away
    instead of at the next tick (a failure becomes an incident in seconds).

    With the broker away the task is not queued (logged and counted by ``task_publish``) and the
    rules see the failure at their next detection tick: what ingestion stored is answered as stored.
    """
    transaction.on_commit(
        lambda: task_publish(rules_evaluate_for_loader, (loader_id,), expires=settings.DETECTION_TASK_EXPIRES_SECONDS)
    )
