"""The checklist's writes — the rules enforced here and nowhere else.

- The first time a step is seen done (a render of the checklist or a metrics scrape) is kept,
  installation-wide; later it may be undone in live state, the first time stays.
- Only the field protection step may be skipped, and only by whoever holds ``onboarding.skip_step``
  (the Admin role); the same permission undoes it. Who and when are kept, and the history of each.
- Hiding the checklist is a person's own choice: each hides and brings back only their own.
- The first loader page a person opens is recorded once per person; demo accounts are not counted.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from etl_monitor.bootstrap import DEMO_USER_PREFIX
from etl_monitor.errors import InvalidInput
from etl_monitor.permissions import permission_require
from onboarding.models import SKIPPABLE, ChecklistDismissal, LoaderPageVisit, Step, StepRecord
from onboarding.selectors import SKIP_PERMISSION, Checklist, checklist_read


def _records_ensure() -> dict[str, StepRecord]:
    records = {r.step: r for r in StepRecord.objects.all()}
    missing = [StepRecord(step=step) for step in Step.values if step not in records]
    if missing:
        StepRecord.objects.bulk_create(missing, ignore_conflicts=True)
        records = {r.step: r for r in StepRecord.objects.all()}
    return records


def steps_first_done_record(*, done: set[Step], now: dt.datetime | None = None) -> None:
    """Stamp ``first_done_at`` on the steps of ``done`` that never had it (usually: no write)."""
    records = _records_ensure()
    new = [step for step in done if records[step].first_done_at is None]
    if new:
        # A bulk update: no history row for a timestamp, and two renders at once write the same.
        StepRecord.objects.filter(step__in=new, first_done_at__isnull=True).update(first_done_at=now or timezone.now())


def checklist_progress(*, base_url: str, now: dt.datetime | None = None) -> Checklist:
    """The checklist as it stands, recording the steps seen done for the first time."""
    checklist = checklist_read(base_url=base_url)
    steps_first_done_record(done=checklist.done_steps, now=now)
    return checklist


def _skippable(step: str) -> Step:
    if step not in SKIPPABLE:
        raise InvalidInput({"step": [f"Only these steps can be skipped: {', '.join(SKIPPABLE)}."]})
    return Step(step)


@transaction.atomic
def step_skip(*, user: AbstractBaseUser, step: str) -> StepRecord:
    """Mark ``step`` as deliberately skipped for the whole installation (idempotent)."""
    permission_require(user, SKIP_PERMISSION, "skip onboarding steps")
    _records_ensure()
    record = StepRecord.objects.select_for_update().get(step=_skippable(step))
    if record.skipped_at is None:
        record.skipped_at, record.skipped_by = timezone.now(), user
        record._change_reason = "Skipped"  # type: ignore[attr-defined]
        record.save(update_fields=["skipped_at", "skipped_by"])
    return record


@transaction.atomic
def step_skip_undo(*, user: AbstractBaseUser, step: str) -> StepRecord:
    """Take a skip back: the step is open again unless its own condition holds (idempotent)."""
    permission_require(user, SKIP_PERMISSION, "undo a skipped onboarding step")
    _records_ensure()
    record = StepRecord.objects.select_for_update().get(step=_skippable(step))
    if record.skipped_at is not None:
        record.skipped_at, record.skipped_by = None, None
        record._change_reason = "Skip undone"  # type: ignore[attr-defined]
        record.save(update_fields=["skipped_at", "skipped_by"])
    return record


def checklist_dismiss(*, user: AbstractBaseUser) -> None:
    """Hide the checklist for ``user`` only."""
    ChecklistDismissal.objects.get_or_create(user=user, defaults={"dismissed_at": timezone.now()})


def checklist_restore(*, user: AbstractBaseUser) -> None:
    """Show the checklist to ``user`` again."""
    ChecklistDismissal.objects.filter(user=user).delete()


def loader_page_visit_record(*, user: AbstractBaseUser, loader_code: str) -> bool:
    """Remember the first loader page ``user`` opened; True if this was it."""
    if not user.is_authenticated or user.get_username().startswith(DEMO_USER_PREFIX):
        return False
    if LoaderPageVisit.objects.filter(user=user).exists():
        return False
    try:
        with transaction.atomic():
            LoaderPageVisit.objects.create(user=user, loader_code=loader_code[:100], visited_at=timezone.now())
    except IntegrityError:  # the same person's other tab was first
        return False
    return True
