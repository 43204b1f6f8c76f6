"""Backtests too big for a request (BACKTEST_INLINE_MAX) run on the worker as a BacktestJob: the
size decides, the job's result is the inline one, a failure is FAILED with its reason, only the
requester and Admins see a job, and the hourly cleanup fails lost jobs and deletes old ones."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused
from incidents.backtest import EVALUATION_COST, Backtest, backtest_evaluations, backtest_size, rule_backtest
from incidents.backtest_jobs import (
    backtest_job_result,
    backtest_jobs_cleanup,
    backtest_jobs_visible,
    rule_backtest_start,
    rule_draft_backtest_start,
)
from incidents.models import BacktestJob, DetectionRule, Incident, RuleSubjectState, Scope
from incidents.tasks import backtest_jobs_cleanup as cleanup_task
from incidents.tasks import backtest_run
from loaders.models import Loader
from tests.incidents.test_backtest import add_lag_signals

DRAFT = {
    "kind": "metric_threshold",
    "params": {"signal_key": "lag"},
    "threshold": 10,
    "window_seconds": 3600,
    "interval_seconds": 3600,
}


@pytest.fixture
def lag_rule(active_loader, rule_factory) -> DetectionRule:
    # Off the hour's grid by 2.5 min, so no signal sits on the edge of an evaluation's window.
    add_lag_signals(active_loader, 1, end=timezone.now() - dt.timedelta(seconds=150))
    return rule_factory(
        "metric_threshold", params={"signal_key": "lag"}, threshold=10, window_seconds=3600, interval_seconds=3600
    )


def without_timing(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "elapsed_seconds"}


def test_the_size_is_loaders_in_scope_and_the_evaluations_cost_times_evaluations(lag_rule, active_loader):
    watched = Loader.objects.filter(is_paused=False).count()
    assert backtest_size(lag_rule, 2) == (watched + EVALUATION_COST) * 49
    assert backtest_size(lag_rule, 30) == (watched + EVALUATION_COST) * (30 * 24 + 1)
    listed = DetectionRule(name="x", kind="metric_threshold", scope=Scope.LOADERS, interval_seconds=60)
    assert backtest_size(listed, 1, [active_loader.pk]) == (1 + EVALUATION_COST) * (24 * 60 + 1)
    stretched = DetectionRule(name="y", kind="metric_threshold", scope=Scope.LOADERS, interval_seconds=60)
    assert backtest_evaluations(stretched, 90) <= 3000, "BACKTEST_MAX_EVALUATIONS caps the ticks"
    assert backtest_size(stretched, 90, []) == EVALUATION_COST * backtest_evaluations(stretched, 90)
    with pytest.raises(InvalidInput) as refused:
        backtest_size(lag_rule, 0)
    assert list(refused.value.errors) == ["days"]


def test_a_small_backtest_runs_inline(viewer, lag_rule, settings):
    settings.BACKTEST_INLINE_MAX = backtest_size(lag_rule, 2)
    result = rule_backtest_start(user=viewer, rule=lag_rule, days=2)
    assert isinstance(result, Backtest) and result.incidents
    assert not BacktestJob.objects.exists()


def test_a_big_one_is_a_job_whose_result_is_the_inline_one(
    viewer, lag_rule, settings, django_capture_on_commit_callbacks
):
    settings.BACKTEST_INLINE_MAX = backtest_size(lag_rule, 2) - 1
    with django_capture_on_commit_callbacks() as queued:
        job = rule_backtest_start(user=viewer, rule=lag_rule, days=2)
    assert isinstance(job, BacktestJob)
    assert (job.status, job.rows_total, job.days, job.rule_name) == (
        "QUEUED",
        backtest_size(lag_rule, 2),
        2,
        lag_rule.name,
    )
    assert backtest_job_result(job) is None
    for enqueue in queued:
        enqueue()  # Celery is eager in tests: the task runs here, as the worker would
    job.refresh_from_db()
    assert job.status == "DONE" and not job.error, job.error
    assert job.started_at and job.finished_at and job.started_at <= job.finished_at
    inline = rule_backtest(rule=lag_rule, days=2, now=job.created_at).as_dict()
    assert job.result["incidents"], "the lag breaches: the comparison is not of two empty lists"
    assert without_timing(job.result) == without_timing(inline)
    assert backtest_job_result(job).as_dict() == job.result, "what the job page shows is what it stored"
    assert not Incident.objects.exists() and not RuleSubjectState.objects.exists()


def test_a_big_draft_keeps_its_validated_fields_and_runs_as_the_inline_draft(
    admin_user, active_loader, settings, django_capture_on_commit_callbacks
):
    add_lag_signals(active_loader, 1, end=timezone.now() - dt.timedelta(seconds=150))
    settings.BACKTEST_INLINE_MAX = 1
    draft = {**DRAFT, "scope": "LOADERS", "scope_loaders": ["SALES-DAILY"]}
    with django_capture_on_commit_callbacks(execute=True):
        job = rule_draft_backtest_start(user=admin_user, data=draft, days=2)
    job.refresh_from_db()
    assert (job.status, job.rule_id, job.rule_name) == ("DONE", None, "draft"), job.error
    assert job.scope_loader_ids == [active_loader.pk] and job.draft["threshold"] == 10
    assert not DetectionRule.objects.filter(name="draft").exists()
    rule = DetectionRule(name="draft", scope=Scope.LOADERS, **DRAFT)
    inline = rule_backtest(rule=rule, days=2, now=job.created_at, scope_loader_ids=[active_loader.pk])
    assert job.result["incidents"] and without_timing(job.result) == without_timing(inline.as_dict())


def test_a_draft_is_checked_before_any_job_is_made(viewer, admin_user, active_loader, settings):
    settings.BACKTEST_INLINE_MAX = 1
    with pytest.raises(PermissionRefused):
        rule_draft_backtest_start(user=viewer, data=DRAFT, days=2)
    with pytest.raises(InvalidInput) as refused:
        rule_draft_backtest_start(user=admin_user, data={**DRAFT, "params": {}}, days=2)
    assert list(refused.value.errors) == ["params.signal_key"]
    with pytest.raises(InvalidInput) as refused:
        rule_draft_backtest_start(user=admin_user, data=DRAFT, days=91)
    assert list(refused.value.errors) == ["days"]
    assert not BacktestJob.objects.exists()


def queued_job(user, rule, settings, capture) -> tuple[BacktestJob, list]:
    settings.BACKTEST_INLINE_MAX = 1
    with capture() as callbacks:
        job = rule_backtest_start(user=user, rule=rule, days=2)
    return job, callbacks


def run(callbacks: list, job: BacktestJob) -> BacktestJob:
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    return job


def test_a_rule_that_no_longer_evaluates_fails_the_job_with_its_error(
    viewer, lag_rule, settings, django_capture_on_commit_callbacks
):
    job, callbacks = queued_job(viewer, lag_rule, settings, django_capture_on_commit_callbacks)
    DetectionRule.objects.filter(pk=lag_rule.pk).update(kind="retired_kind")
    job = run(callbacks, job)
    assert job.status == "FAILED" and job.result is None and job.finished_at
    assert job.error.startswith("kind: ") and "retired_kind" in job.error


def test_a_rule_deleted_before_its_job_ran_fails_it(viewer, lag_rule, settings, django_capture_on_commit_callbacks):
    job, callbacks = queued_job(viewer, lag_rule, settings, django_capture_on_commit_callbacks)
    lag_rule.delete()
    job = run(callbacks, job)
    assert (job.status, job.error, job.rule_id) == ("FAILED", "The rule was deleted before its backtest ran.", None)


def test_a_role_taken_away_before_the_job_ran_fails_it(viewer, lag_rule, settings, django_capture_on_commit_callbacks):
    job, callbacks = queued_job(viewer, lag_rule, settings, django_capture_on_commit_callbacks)
    viewer.groups.clear()
    job = run(callbacks, job)
    assert (job.status, job.error) == ("FAILED", "Your role does not allow you to backtest rules.")


def test_an_unexpected_error_fails_the_job_saying_what_it_was(admin_user, active_loader, settings):
    job = BacktestJob.objects.create(
        created_by=admin_user, rule_name="broken", draft={"no_such_field": 1}, days=2, rows_total=99
    )
    backtest_run.delay(str(job.pk))
    job.refresh_from_db()
    assert job.status == "FAILED" and "(TypeError)" in job.error and "administrator" in job.error


def test_a_finished_job_is_left_alone_when_delivered_again(
    viewer, lag_rule, settings, django_capture_on_commit_callbacks
):
    job, callbacks = queued_job(viewer, lag_rule, settings, django_capture_on_commit_callbacks)
    job = run(callbacks, job)
    finished, result = job.finished_at, job.result
    backtest_run.delay(str(job.pk))
    job.refresh_from_db()
    assert (job.status, job.finished_at, job.result) == ("DONE", finished, result)
    backtest_run.delay("00000000-0000-0000-0000-000000000000")  # a job deleted meanwhile: nothing to do


def test_only_the_requester_and_admins_see_a_job(viewer, operator, admin_user, lag_rule, settings):
    job = BacktestJob.objects.create(created_by=viewer, rule=lag_rule, rule_name=lag_rule.name, days=2)
    assert list(backtest_jobs_visible(user=viewer)) == [job]
    assert list(backtest_jobs_visible(user=admin_user)) == [job]
    assert not backtest_jobs_visible(user=operator).exists()


def test_the_cleanup_fails_lost_jobs_and_deletes_old_ones(viewer, lag_rule, settings):
    settings.BACKTEST_JOB_KEEP_DAYS, settings.BACKTEST_JOB_STALE_MINUTES = 3, 60
    now = timezone.now()

    def job(status: str, created_minutes_ago: int, finished_days_ago: float | None = None) -> BacktestJob:
        made = BacktestJob.objects.create(created_by=viewer, rule=lag_rule, rule_name="r", days=2, status=status)
        finished = now - dt.timedelta(days=finished_days_ago) if finished_days_ago is not None else None
        BacktestJob.objects.filter(pk=made.pk).update(
            created_at=now - dt.timedelta(minutes=created_minutes_ago), finished_at=finished
        )
        return made

    lost, fresh = job("RUNNING", 61), job("QUEUED", 5)
    job("DONE", 5 * 1440, 4)  # ended 4 days ago: deleted
    recent = job("FAILED", 2 * 1440, 2)
    assert backtest_jobs_cleanup(now=now) == 2
    assert set(BacktestJob.objects.values_list("pk", flat=True)) == {lost.pk, fresh.pk, recent.pk}
    lost.refresh_from_db()
    assert lost.status == "FAILED" and "did not finish within 60 minutes" in lost.error and lost.finished_at
    assert BacktestJob.objects.get(pk=fresh.pk).status == "QUEUED"
    assert cleanup_task.delay().get() == 0, "the hourly task: nothing more to do"
    assert BacktestJob.objects.filter(status="FAILED").count() == 2


def test_the_cleanup_runs_every_hour():
    from etl_monitor.schedule import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["backtest-jobs-cleanup"]
    assert entry["task"] == cleanup_task.name and entry["schedule"] == dt.timedelta(hours=1)


def test_a_job_reads_as_what_it_backtests(viewer, lag_rule):
    job = BacktestJob.objects.create(created_by=viewer, rule=lag_rule, rule_name=lag_rule.name, days=30)
    assert str(job) == f"backtest of {lag_rule.name} over 30 days (queued)"


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
def test_every_role_that_reads_rules_may_start_one(make_user, lag_rule, settings, role):
    user = make_user(role)
    settings.BACKTEST_INLINE_MAX = 1
    assert isinstance(rule_backtest_start(user=user, rule=lag_rule, days=2), BacktestJob)
    with pytest.raises(PermissionRefused):
        rule_backtest_start(user=make_user(), rule=lag_rule, days=2)
