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
def rules_evaluate_for_loader(loader_id: int) -> None:
    """The fast path: a FAILED run or signal just arrived; evaluate the transaction rules that watch it."""
    from incidents.services import rules_for_loader

    for rule_id in rules_for_loader(loader_id):
        rule_evaluate_claimed(rule_id=rule_id)
