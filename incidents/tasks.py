"""Detection tasks: thin wrappers around incidents.services, safe to run twice."""

from celery import shared_task

from incidents.services import rule_evaluate_claimed, rules_due


@shared_task(name="incidents.tasks.detection_tick", ignore_result=True)
def detection_tick() -> int:
    """Enqueue one evaluation task per rule whose interval has elapsed."""
    due = list(rules_due().values_list("pk", flat=True))
    for rule_id in due:
        rule_evaluate_task.delay(rule_id)
    return len(due)


@shared_task(name="incidents.tasks.rule_evaluate", ignore_result=True, acks_late=True)
def rule_evaluate_task(rule_id: int) -> None:
    """Evaluate one rule; skipped when another worker holds it (SELECT … FOR UPDATE SKIP LOCKED)."""
    rule_evaluate_claimed(rule_id=rule_id)


@shared_task(name="incidents.tasks.rules_evaluate_for_loader", ignore_result=True, acks_late=True)
def rules_evaluate_for_loader(loader_id: int, rule_ids: list[int] | None = None, attempt: int = 0) -> None:
    """The fast path: a FAILED run or signal just arrived; evaluate the transaction rules that watch it.

    A rule another worker is evaluating right now is tried again a second later (a few
    times), so the failure is not left waiting for that rule's next interval.
    """
    from incidents.services import rules_for_loader

    busy = [
        rule_id
        for rule_id in (rule_ids if rule_ids is not None else rules_for_loader(loader_id))
        if rule_evaluate_claimed(rule_id=rule_id, loader_id=loader_id) is None
    ]
    if busy and attempt < 5:
        rules_evaluate_for_loader.apply_async((loader_id, busy, attempt + 1), countdown=1)
