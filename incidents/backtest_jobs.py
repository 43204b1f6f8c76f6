"""Backtests too big for a web request run on the worker, as a ``BacktestJob``.

A backtest of one rule over 30 days and a thousand loaders takes tens of seconds: more than a
web worker should be held (and than gunicorn's WEB_TIMEOUT allows). So the admin and the API
start every backtest here; ``backtest_size`` (loaders in scope × evaluations) decides before any
work is done. Up to BACKTEST_INLINE_MAX it runs while the caller waits, exactly as before; above
it a job is queued (``incidents.tasks.backtest_run``) and the caller is sent to the job's page or
given its URL. ``manage.py rule_backtest`` does not come here: a command may take minutes.

What is enforced here and nowhere else:

- who may start one: reading rules for a saved rule; adding (or changing) rules for a draft —
  checked when it is asked for and again when the job runs (a role taken away in between fails it);
- who may read a job: its requester, and Admins (``backtest_jobs_visible``);
- that a job ends DONE or FAILED, never stays RUNNING: a failure is stored with its reason, a
  worker killed mid-run leaves it to the redelivered task (``acks_late``), and one the queue lost
  is failed by the hourly cleanup after BACKTEST_JOB_STALE_MINUTES;
- how long a job is kept: BACKTEST_JOB_KEEP_DAYS after it ended (``backtest_jobs_cleanup``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import DateTimeField, QuerySet
from django.utils import timezone

from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.outage import task_publish
from etl_monitor.permissions import permission_require
from incidents.backtest import (
    Backtest,
    backtest_days_check,
    backtest_size,
    rule_backtest,
    rule_draft_check,
)
from incidents.models import BacktestJob, DetectionRule, Scope

logger = logging.getLogger(__name__)

BACKTEST_FAILED = (
    "The backtest failed unexpectedly ({error}); run it again, or ask an administrator to look at the logs."
)
QUEUE_UNAVAILABLE = "The background queue (Redis) was unavailable, so this backtest did not start. Run it again."
RULE_DELETED = "The rule was deleted before its backtest ran."
STALE = "The backtest did not finish within {minutes} minutes (the worker stopped or lost it); run it again."

ACTIVE = (BacktestJob.Status.QUEUED, BacktestJob.Status.RUNNING)


def rule_backtest_start(*, user: AbstractBaseUser, rule: DetectionRule, days: Any) -> Backtest | BacktestJob:
    """Backtest a saved rule now if it is small enough, else queue it: the Backtest, or the job."""
    permission_require(user, "incidents.view_detectionrule", "backtest rules")
    days = backtest_days_check(days)
    size = backtest_size(rule, days)
    if size <= settings.BACKTEST_INLINE_MAX:
        return rule_backtest(rule=rule, days=days)
    return _job_create(user=user, rule=rule, days=days, size=size, rule_name=rule.name)


def rule_draft_backtest_start(
    *, user: AbstractBaseUser, data: dict[str, Any], days: Any, rule: DetectionRule | None = None
) -> Backtest | BacktestJob:
    """``backtest.rule_draft_backtest``, or a job for a big one: the draft is validated (and the
    permission checked) now, and the job keeps its validated fields, never the form's input."""
    draft, scope_ids = rule_draft_check(user=user, data=data, rule=rule)
    days = backtest_days_check(days)
    size = backtest_size(draft, days, scope_ids)
    if size <= settings.BACKTEST_INLINE_MAX:
        return rule_backtest(rule=draft, days=days, scope_loader_ids=scope_ids)
    if draft.scope == Scope.LOADERS and scope_ids is None and draft.pk is not None:
        scope_ids = list(draft.scope_loaders.values_list("pk", flat=True))  # "unchanged": the rule's list now
    return _job_create(
        user=user, rule=rule, days=days, size=size, rule_name=draft.name, draft=_draft_fields(draft), scope=scope_ids
    )


def _draft_fields(draft: DetectionRule) -> dict[str, Any]:
    """The draft's own columns (JSON-native), enough to build it again on the worker."""
    return {
        field.attname: field.value_from_object(draft)
        for field in DetectionRule._meta.concrete_fields
        if not isinstance(field, DateTimeField) and field.name != "last_error"
    }


def _job_create(
    *,
    user: AbstractBaseUser,
    rule: DetectionRule | None,
    days: int,
    size: int,
    rule_name: str,
    draft: dict[str, Any] | None = None,
    scope: list[int] | None = None,
) -> BacktestJob:
    job = BacktestJob.objects.create(
        created_by=user,
        rule=rule,
        rule_name=rule_name[:200],
        draft=draft,
        scope_loader_ids=scope,
        days=days,
        rows_total=size,
    )
    transaction.on_commit(lambda: _job_enqueue(job.pk))
    job.refresh_from_db()  # outside a transaction it is queued already, or FAILED if the queue was away
    return job


def _job_enqueue(job_id: Any) -> None:
    # With the broker away the job fails at once, saying so, rather than waiting QUEUED for the cleanup.
    from incidents.tasks import backtest_run

    if not task_publish(backtest_run, (str(job_id),)):
        _job_finish(BacktestJob.objects.filter(pk=job_id, status=BacktestJob.Status.QUEUED), error=QUEUE_UNAVAILABLE)


def _job_finish(jobs: QuerySet[BacktestJob], *, result: dict[str, Any] | None = None, error: str = "") -> None:
    status = BacktestJob.Status.FAILED if error else BacktestJob.Status.DONE
    jobs.update(status=status, result=result, error=error, finished_at=timezone.now())


def backtest_job_run(*, job_id: Any) -> None:
    """Run a queued job (the Celery task calls this). Safe to deliver twice or to retry.

    The row stays locked while the backtest runs, so a duplicate delivery waits and then finds the
    job finished; a worker killed mid-run leaves it RUNNING and the redelivered task runs it again.
    """
    BacktestJob.objects.filter(pk=job_id, status=BacktestJob.Status.QUEUED).update(
        status=BacktestJob.Status.RUNNING, started_at=timezone.now()
    )
    with transaction.atomic():
        job = BacktestJob.objects.select_for_update().select_related("created_by").filter(pk=job_id).first()
        if job is None or job.status != BacktestJob.Status.RUNNING:
            return
        result, error = None, ""
        try:
            with transaction.atomic():  # a database error rolls back to here, and the job can still be marked
                result = _job_backtest(job).as_dict()
        except InvalidInput as exc:
            error = "; ".join(f"{name}: {' '.join(problems)}" for name, problems in exc.errors.items())
        except ServiceError as exc:
            error = exc.message
        except Exception as exc:
            logger.exception("rule backtest %s failed", job.pk)
            error = BACKTEST_FAILED.format(error=type(exc).__name__)
        _job_finish(BacktestJob.objects.filter(pk=job.pk), result=result, error=error)


def _job_backtest(job: BacktestJob) -> Backtest:
    """The job's backtest over the days before it was asked for (however long it queued), its
    requester's permission checked again (a role may have gone since)."""
    user = job.created_by
    if job.draft is None:
        permission_require(user, "incidents.view_detectionrule", "backtest rules")
        if job.rule_id is None:
            raise ServiceError(RULE_DELETED)
        rule = DetectionRule.objects.get(pk=job.rule_id)
        return rule_backtest(rule=rule, days=job.days, now=job.created_at)
    perm = "incidents.add_detectionrule" if job.draft.get("id") is None else "incidents.change_detectionrule"
    permission_require(user, perm, "backtest rule drafts")
    draft = DetectionRule(**job.draft)
    return rule_backtest(rule=draft, days=job.days, now=job.created_at, scope_loader_ids=job.scope_loader_ids)


def backtest_job_result(job: BacktestJob) -> Backtest | None:
    """A finished job's Backtest, to be shown as an inline one is (None until it is DONE)."""
    if job.status != BacktestJob.Status.DONE or job.result is None:
        return None
    return Backtest.from_dict(job.result)


def backtest_jobs_visible(*, user: AbstractBaseUser) -> QuerySet[BacktestJob]:
    """The jobs ``user`` may see: their own; every job for Admins."""
    jobs = BacktestJob.objects.select_related("created_by", "rule")
    if user.has_perm("incidents.delete_backtestjob"):
        return jobs
    return jobs.filter(created_by_id=user.pk)


def backtest_jobs_cleanup(*, now: dt.datetime | None = None) -> int:
    """Fail the jobs the queue lost, and delete those that ended BACKTEST_JOB_KEEP_DAYS ago.

    A job still running holds its row lock and is skipped (SKIP LOCKED): only one no worker holds
    is failed. Returns how many jobs were failed or deleted.
    """
    now = now or timezone.now()
    minutes = settings.BACKTEST_JOB_STALE_MINUTES
    with transaction.atomic():
        stale = list(
            BacktestJob.objects.select_for_update(skip_locked=True)
            .filter(status__in=ACTIVE, created_at__lt=now - dt.timedelta(minutes=minutes))
            .values_list("pk", flat=True)
        )
        _job_finish(BacktestJob.objects.filter(pk__in=stale, status__in=ACTIVE), error=STALE.format(minutes=minutes))
    cutoff = now - dt.timedelta(days=settings.BACKTEST_JOB_KEEP_DAYS)
    deleted, _ = BacktestJob.objects.filter(finished_at__lt=cutoff).exclude(status__in=ACTIVE).delete()
    return len(stale) + deleted
