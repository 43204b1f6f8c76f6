"""The backtest in the admin: a page per rule (for every reader of rules) and "Backtest these
settings" on the rule form, which validates and backtests the unsaved values without saving them."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import BacktestJob, DetectionRule, Incident, RuleSubjectState
from tests.incidents.test_backtest import add_lag_signals

FORM = {
    "name": "lag watch",
    "rule_type": "TRANSACTION",
    "kind": "metric_threshold",
    "params": '{"signal_key": "lag"}',
    "operator": "GT",
    "threshold": "10",
    "window_seconds": "300",
    "severity": "LOW",
    "scope": "ALL",
    "interval_seconds": "3600",
    "open_after": "1",
    "resolve_after_seconds": "0",
    "enabled": "on",
}


@pytest.fixture
def lag_rule(active_loader, rule_factory) -> DetectionRule:
    add_lag_signals(active_loader, 1, end=timezone.now())
    return rule_factory(
        "metric_threshold", params={"signal_key": "lag"}, threshold=10, window_seconds=3600, interval_seconds=3600
    )


def test_the_rule_page_has_a_backtest_button_and_its_page_lists_the_incidents(client, viewer, lag_rule):
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/change/").content.decode()
    assert f'href="/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=30"' in page
    assert "Backtest these settings" not in page, "a reader cannot change the rule, so has no draft to backtest"
    response = client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=2")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="backtest-incidents"' in page and f'href="{reverse("operations:loader", args=["SALES-DAILY"])}"' in page
    assert "one every 1 h" in page and "49 evaluations" in page
    assert not Incident.objects.exists() and not RuleSubjectState.objects.exists()


def test_the_backtest_page_asks_for_days_and_names_bad_ones(client, viewer, lag_rule):
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/").content.decode()
    assert 'name="days"' in page and 'value="30"' in page and 'id="backtest-result"' not in page
    page = client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=500").content.decode()
    assert "From 1 to 90 days (got 500)." in page
    assert client.get("/admin/incidents/detectionrule/999999/backtest/").status_code == 404


def test_people_without_a_role_see_no_backtest(client, make_user, lag_rule):
    client.force_login(make_user())
    assert client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=2").status_code == 403


def test_backtest_these_settings_on_the_add_form_does_not_save(client, admin_user, active_loader):
    add_lag_signals(active_loader, 1, end=timezone.now())
    client.force_login(admin_user)
    response = client.post("/admin/incidents/detectionrule/add/", {**FORM, "_backtest": "1", "_backtest_days": "2"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="backtest-result"' in page and "what these settings would have opened" in page
    assert 'value="lag watch"' in page, "the form keeps the values typed"
    assert not DetectionRule.objects.filter(name="lag watch").exists()
    assert not Incident.objects.exists()


def test_backtest_these_settings_on_the_change_form_does_not_save(client, admin_user, lag_rule):
    client.force_login(admin_user)
    changed = {**FORM, "name": lag_rule.name, "threshold": "1000", "_backtest": "1", "_backtest_days": "2"}
    page = client.post(f"/admin/incidents/detectionrule/{lag_rule.pk}/change/", changed).content.decode()
    assert "No incident would have opened." in page, "no lag reaches 1,000"
    lag_rule.refresh_from_db()
    assert lag_rule.threshold == 10


def test_a_bad_draft_shows_the_form_errors_and_runs_nothing(client, admin_user, active_loader):
    client.force_login(admin_user)
    bad = {**FORM, "params": "{}", "_backtest": "1", "_backtest_days": "2"}
    page = client.post("/admin/incidents/detectionrule/add/", bad).content.decode()
    assert "Give signal_key or metric_type." in page and 'id="backtest-result"' not in page
    page = client.post("/admin/incidents/detectionrule/add/", {**FORM, "_backtest": "1", "_backtest_days": "0"})
    assert "From 1 to 90 days (got 0)." in page.content.decode()
    assert not DetectionRule.objects.filter(name="lag watch").exists()


def test_readers_cannot_backtest_drafts(client, viewer, lag_rule):
    client.force_login(viewer)
    response = client.post("/admin/incidents/detectionrule/add/", {**FORM, "_backtest": "1"})
    assert response.status_code == 403
    changed = {**FORM, "name": lag_rule.name, "_backtest": "1"}
    assert client.post(f"/admin/incidents/detectionrule/{lag_rule.pk}/change/", changed).status_code == 403


def test_a_big_backtest_goes_to_its_job_page_which_runs_then_shows_the_result(
    client, viewer, lag_rule, settings, django_capture_on_commit_callbacks
):
    settings.BACKTEST_INLINE_MAX = 1
    client.force_login(viewer)
    with django_capture_on_commit_callbacks() as queued:
        response = client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=2")
    job = BacktestJob.objects.get()
    page_url = f"/admin/incidents/detectionrule/backtests/{job.pk}/"
    assert response.status_code == 302 and response["Location"] == page_url
    page = client.get(page_url).content.decode()
    assert "Queued… (asked for" in page and '<meta http-equiv="refresh" content="2">' in page
    assert 'id="backtest-result"' not in page
    BacktestJob.objects.filter(pk=job.pk).update(status="RUNNING", started_at=timezone.now())
    page = client.get(page_url).content.decode()
    assert "Running… (started 0 s ago)" in page or "Running… (started 1 s ago)" in page
    BacktestJob.objects.filter(pk=job.pk).update(status="QUEUED", started_at=None)
    for enqueue in queued:
        enqueue()
    page = client.get(page_url).content.decode()
    assert 'http-equiv="refresh"' not in page and "Running…" not in page
    assert 'id="backtest-incidents"' in page and "what this rule would have opened" in page
    assert f'href="{reverse("operations:loader", args=["SALES-DAILY"])}"' in page and "49 evaluations" in page


def test_a_big_draft_goes_to_its_job_page(
    client, admin_user, active_loader, settings, django_capture_on_commit_callbacks
):
    add_lag_signals(active_loader, 1, end=timezone.now())
    settings.BACKTEST_INLINE_MAX = 1
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/incidents/detectionrule/add/", {**FORM, "_backtest": "1", "_backtest_days": "2"})
    job = BacktestJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/backtests/{job.pk}/")
    page = client.get(response["Location"]).content.decode()
    assert "unsaved settings of" in page and "what these settings would have opened" in page
    assert not DetectionRule.objects.filter(name="lag watch").exists()


def test_a_failed_job_page_says_why(client, viewer, lag_rule, settings, django_capture_on_commit_callbacks):
    settings.BACKTEST_INLINE_MAX = 1
    client.force_login(viewer)
    with django_capture_on_commit_callbacks() as queued:
        client.get(f"/admin/incidents/detectionrule/{lag_rule.pk}/backtest/?days=2")
    DetectionRule.objects.filter(pk=lag_rule.pk).update(kind="retired_kind")
    for enqueue in queued:
        enqueue()
    page = client.get(f"/admin/incidents/detectionrule/backtests/{BacktestJob.objects.get().pk}/").content.decode()
    assert 'class="error"' in page and "retired_kind" in page and 'http-equiv="refresh"' not in page


def test_only_the_requester_and_admins_see_a_job_page(client, viewer, operator, admin_user, lag_rule):
    job = BacktestJob.objects.create(created_by=viewer, rule=lag_rule, rule_name=lag_rule.name, days=2)
    url = f"/admin/incidents/detectionrule/backtests/{job.pk}/"
    for user, expected in ((viewer, 200), (admin_user, 200), (operator, 404)):
        client.force_login(user)
        assert client.get(url).status_code == expected, user
