"""The backtest over the API: an existing rule (reading rules is enough) and a draft (adding rules)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.backtest import rule_backtest
from incidents.backtest_jobs import QUEUE_UNAVAILABLE
from incidents.models import BacktestJob, DetectionRule, Incident, RuleSubjectState
from tests.incidents.test_backtest import add_lag_signals

DRAFT = {
    "kind": "metric_threshold",
    "params": {"signal_key": "lag"},
    "threshold": 10,
    "window_seconds": 300,
    "interval_seconds": 3600,
    "days": 2,
}


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def lag_rule(active_loader, rule_factory) -> DetectionRule:
    add_lag_signals(active_loader, 1, end=timezone.now())
    return rule_factory(
        "metric_threshold", params={"signal_key": "lag"}, threshold=10, window_seconds=3600, interval_seconds=3600
    )


def test_it_backtests_a_rule_for_anyone_who_reads_rules(viewer, lag_rule):
    response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"days": 3}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["rule"], body["step_seconds"], body["evaluations"]) == (lag_rule.name, 3600, 73)
    assert body["incidents"] and body["incidents"][0]["subject"] == "SALES-DAILY"
    assert body["per_subject"] == {"SALES-DAILY": len(body["incidents"])}
    assert set(body["incidents"][0]) >= {"start", "end", "peak", "peak_score", "occurrences", "duration_seconds"}
    assert not Incident.objects.exists() and not RuleSubjectState.objects.exists()


def test_days_default_to_30(viewer, lag_rule, settings):
    settings.BACKTEST_INLINE_MAX = 10**9  # 30 days of the test's loaders is more than the default runs inline
    response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["evaluations"] == 30 * 24 + 1


@pytest.mark.parametrize("days", [0, 91, "many"])
def test_bad_days_are_a_400_naming_days(viewer, lag_rule, days):
    response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"days": days}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["days"]


def test_unknown_fields_and_rules_are_refused(viewer, lag_rule):
    response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"dayz": 3}, format="json")
    assert response.status_code == 400 and "dayz" in response.json()
    assert api(viewer).post("/api/v1/rules/999999/backtest/", {}, format="json").status_code == 404


def test_nobody_anonymous_backtests(lag_rule):
    assert api().post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {}, format="json").status_code in (401, 403)
    assert api().post("/api/v1/rules/backtest/", DRAFT, format="json").status_code in (401, 403)


def test_a_draft_is_backtested_by_admins_and_not_saved(admin_user, active_loader):
    add_lag_signals(active_loader, 1, end=timezone.now())
    before = DetectionRule.objects.count()
    response = api(admin_user).post("/api/v1/rules/backtest/", DRAFT, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["rule"] == "draft" and body["evaluations"] == 49
    assert body["incidents"]
    assert DetectionRule.objects.count() == before
    assert not Incident.objects.exists()


def test_a_draft_needs_the_permission_to_add_rules(viewer, editor, operator, active_loader):
    for user in (viewer, editor, operator):
        assert api(user).post("/api/v1/rules/backtest/", DRAFT, format="json").status_code == 403


def test_a_bad_draft_is_a_400_naming_the_fields(admin_user, active_loader):
    bad = {**DRAFT, "params": {"signal_key": "lag", "per": "team"}, "scope": "LOADERS", "days": 120}
    response = api(admin_user).post("/api/v1/rules/backtest/", bad, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"params.per"} or set(response.json()) >= {"days"}
    response = api(admin_user).post("/api/v1/rules/backtest/", {**DRAFT, "scope": "LOADERS"}, format="json")
    assert response.status_code == 400 and "scope_loaders" in response.json()
    response = api(admin_user).post("/api/v1/rules/backtest/", {**DRAFT, "days": 0}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["days"]
    response = api(admin_user).post("/api/v1/rules/backtest/", {**DRAFT, "kind": "nope"}, format="json")
    assert response.status_code == 400 and "kind" in response.json()


def test_a_draft_of_listed_loaders_watches_only_them(admin_user, active_loader):
    add_lag_signals(active_loader, 1, end=timezone.now())
    draft = {**DRAFT, "scope": "LOADERS", "scope_loaders": ["SALES-DAILY"]}
    response = api(admin_user).post("/api/v1/rules/backtest/", draft, format="json")
    assert response.status_code == 200, response.json()
    assert set(response.json()["per_subject"]) == {"SALES-DAILY"}


def test_a_big_backtest_is_a_202_with_the_job_to_poll(viewer, lag_rule, settings, django_capture_on_commit_callbacks):
    settings.BACKTEST_INLINE_MAX = 1
    with django_capture_on_commit_callbacks() as queued:
        response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"days": 2}, format="json")
    assert response.status_code == 202, response.json()
    job = BacktestJob.objects.get()
    url = f"http://testserver/api/v1/backtests/{job.pk}/"
    assert response.json() == {"id": str(job.pk), "status": "QUEUED", "url": url}
    assert response["Location"] == url
    body = api(viewer).get(url).json()
    assert (body["status"], body["result"], body["rule"], body["draft"], body["days"]) == (
        "QUEUED",
        None,
        lag_rule.pk,
        False,
        2,
    )
    for enqueue in queued:
        enqueue()  # the (eager) worker runs it
    body = api(viewer).get(url).json()
    assert body["status"] == "DONE" and body["error"] == "" and body["finished_at"]
    inline = rule_backtest(rule=lag_rule, days=2, now=BacktestJob.objects.get().created_at).as_dict()
    assert body["result"]["incidents"] == inline["incidents"] and body["result"]["evaluations"] == 49
    assert body["created_by"] == viewer.username and body["size"] == job.rows_total


def test_a_big_draft_is_a_202_too(admin_user, active_loader, settings, django_capture_on_commit_callbacks):
    add_lag_signals(active_loader, 1, end=timezone.now())
    settings.BACKTEST_INLINE_MAX = 1
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).post("/api/v1/rules/backtest/", DRAFT, format="json")
    assert response.status_code == 202, response.json()
    body = api(admin_user).get(response["Location"]).json()
    assert (body["status"], body["rule"], body["rule_name"], body["draft"]) == ("DONE", None, "draft", True)
    assert body["result"]["incidents"]
    assert not DetectionRule.objects.filter(name="draft").exists()


def test_a_failed_job_says_why(viewer, lag_rule, settings, django_capture_on_commit_callbacks):
    settings.BACKTEST_INLINE_MAX = 1
    with django_capture_on_commit_callbacks() as queued:
        response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"days": 2}, format="json")
    lag_rule.delete()
    for enqueue in queued:
        enqueue()
    body = api(viewer).get(response["Location"]).json()
    assert (body["status"], body["result"]) == ("FAILED", None)
    assert body["error"] == "The rule was deleted before its backtest ran."


def test_only_the_requester_and_admins_read_a_job(viewer, operator, admin_user, make_user, lag_rule):
    job = BacktestJob.objects.create(created_by=viewer, rule=lag_rule, rule_name=lag_rule.name, days=2)
    url = f"/api/v1/backtests/{job.pk}/"
    assert api(viewer).get(url).status_code == 200
    assert api(admin_user).get(url).status_code == 200
    assert api(operator).get(url).status_code == 404, "someone else's job is not there for them"
    assert api(make_user()).get(url).status_code == 403, "no role, no rules"
    assert api().get(url).status_code in (401, 403)
    assert api(viewer).get("/api/v1/backtests/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api(viewer).get("/api/v1/backtests/not-a-job/").status_code == 404
    assert api(admin_user).get("/api/v1/backtests/").status_code == 404, "no list: a job is reached by its URL"


@pytest.mark.django_db(transaction=True)
def test_a_big_backtest_that_cannot_be_queued_fails_at_once_saying_why(broker_down, viewer, lag_rule, settings):
    settings.BACKTEST_INLINE_MAX = 1
    response = api(viewer).post(f"/api/v1/rules/{lag_rule.pk}/backtest/", {"days": 2}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "FAILED"
    body = api(viewer).get(response["Location"]).json()
    assert (body["status"], body["error"], body["result"]) == ("FAILED", QUEUE_UNAVAILABLE, None)
    assert body["finished_at"]
