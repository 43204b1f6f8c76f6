"""The ``anomaly`` rule kind in the engine: learned per series, incremental, version-aware."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from incidents.detection import rule_evaluate
from incidents.models import AnomalyState, Incident
from loaders import services
from loaders.models import Loader, LoaderVersion
from signals_app.models import Run, Signal
from tests.conftest import version

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
START = NOW - dt.timedelta(days=21)


def hourly_rows(hour: int, rng: random.Random) -> float:
    """A daily pattern: busy afternoons, quiet nights, 3 % noise."""
    return (10_000 + 4_000 * math.sin(2 * math.pi * (hour - 6) / 24)) * (1 + rng.gauss(0, 0.03))


def add_hourly_runs(loader: Loader, start: dt.datetime, end: dt.datetime, value=None, seed: int = 1) -> None:
    rng = random.Random(seed)
    runs = []
    at = start
    while at < end:
        rows = hourly_rows(at.hour, rng) if value is None else value(at, rng)
        runs.append(
            Run(
                loader=loader,
                status="SUCCEEDED",
                started_at=at,
                finished_at=at + dt.timedelta(minutes=5),
                duration_seconds=300,
                rows_written=round(rows),
            )
        )
        at += dt.timedelta(hours=1)
    Run.objects.bulk_create(runs)


@pytest.fixture
def anomaly_rule(rule_factory):
    def make(**params):
        return rule_factory(
            "anomaly",
            params={"source": "rows_written", **params},
            threshold=None,
            interval_seconds=3600,
            message="{subject}: {series} {headline}",
        )

    return make


def evaluate_hourly(rule, start: dt.datetime, end: dt.datetime) -> list:
    reports = []
    at = start
    while at <= end:
        reports.append(rule_evaluate(rule=rule, now=at))
        at += dt.timedelta(hours=1)
    return reports


def test_a_daily_pattern_does_not_alarm_and_a_real_drop_does(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule()
    evaluate_hourly(rule, NOW - dt.timedelta(days=7), NOW - dt.timedelta(hours=1))
    assert not Incident.objects.filter(rule=rule).exists(), "a daily pattern is not an anomaly"

    Run.objects.create(
        loader=active_loader,
        status="SUCCEEDED",
        started_at=NOW,
        finished_at=NOW + dt.timedelta(minutes=5),
        duration_seconds=300,
        rows_written=3_000,  # 14:00 usually writes about 13,500
    )
    report = rule_evaluate(rule=rule, now=NOW + dt.timedelta(minutes=10))
    assert [d.action for d in report.decisions] == ["opened"]
    incident = Incident.objects.get(rule=rule)
    evidence = incident.metrics
    assert evidence["observed"] == 3_000
    assert evidence["expected_low"] > 3_000 and evidence["expected_high"] > evidence["expected_low"]
    assert evidence["seasonality"] in ("daily", "weekly")
    assert 0.9 <= evidence["score"] <= 1
    assert evidence["learning"] is False
    assert incident.title.startswith("SALES-DAILY: rows written 3,000, expected ")
    assert "Rows written was 3,000" in incident.description


def test_a_new_series_is_learning_until_it_has_history(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, NOW - dt.timedelta(days=2), NOW)
    rule = anomaly_rule()
    report = rule_evaluate(rule=rule, now=NOW)
    assert [d.action for d in report.decisions] == ["clear"]
    state = AnomalyState.objects.get(rule=rule)
    assert state.verdict["learning"] is True
    Run.objects.create(
        loader=active_loader,
        status="SUCCEEDED",
        started_at=NOW,
        finished_at=NOW + dt.timedelta(minutes=1),
        rows_written=1,
    )
    report = rule_evaluate(rule=rule, now=NOW + dt.timedelta(minutes=2))
    assert [d.action for d in report.decisions] == ["clear"], "nothing fires while learning"


def test_evaluations_feed_only_new_points_and_match_one_pass(active_loader, anomaly_rule, settings):
    settings.ANOMALY_HISTORY_DAYS = 30  # both rules learn from the same start
    add_hourly_runs(active_loader, START, NOW)
    step = anomaly_rule()
    evaluate_hourly(step, NOW - dt.timedelta(days=3), NOW)
    once = anomaly_rule()
    rule_evaluate(rule=once, now=NOW)
    stepwise = AnomalyState.objects.get(rule=step)
    whole = AnomalyState.objects.get(rule=once)
    assert stepwise.last_at == whole.last_at
    assert stepwise.detector["points"] == whole.detector["points"]
    assert stepwise.verdict == whole.verdict


def test_a_level_shift_after_an_approved_version_does_not_alarm_but_one_without_does(
    active_loader, anomaly_rule, editor, approver
):
    shift_at = NOW - dt.timedelta(days=3)

    def doubled(at, rng):
        return hourly_rows(at.hour, rng) * (2 if at >= shift_at else 1)

    add_hourly_runs(active_loader, START, NOW, value=doubled)
    other = services.loader_create(
        user=editor,
        data={
            **{f: getattr(version(active_loader, 1), f) for f in ("expected_rows_min", "expected_rows_max")},
            "loader_code": "OTHER-HOURLY",
            "name": "Other",
            "owner": active_loader.owner.slug,
            "schedule_cron": "0 * * * *",
            "schedule_timezone": "UTC",
            "grace_minutes": 5,
        },
    )
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=other.open_version)
    )
    add_hourly_runs(Loader.objects.get(pk=other.pk), START, NOW, value=doubled)
    # Version 2 of the first loader expects twice the rows, approved just before the shift.
    services.loader_edit(user=editor, loader=active_loader, data={"expected_rows_max": 40_000})
    draft = Loader.objects.get(pk=active_loader.pk).open_version
    services.loader_version_approve(user=approver, version=services.loader_version_submit(user=editor, version=draft))
    LoaderVersion.objects.filter(loader=active_loader, number=2).update(decided_at=shift_at - dt.timedelta(minutes=30))
    LoaderVersion.objects.filter(loader=active_loader, number=1).update(decided_at=START - dt.timedelta(days=1))
    LoaderVersion.objects.filter(loader_id=other.pk).update(decided_at=START - dt.timedelta(days=1))

    rule = anomaly_rule()
    evaluate_hourly(rule, shift_at - dt.timedelta(days=2), NOW)
    opened = Incident.objects.filter(rule=rule)
    assert not opened.filter(loader=active_loader).exists(), "an approved change is a known change point"
    assert opened.filter(loader_id=other.pk).exists(), "the same shift without an approval is an anomaly"


def test_an_anomaly_soon_after_an_approval_names_the_version(active_loader, anomaly_rule, editor, approver):
    add_hourly_runs(active_loader, START, NOW)
    services.loader_edit(user=editor, loader=active_loader, data={"description": "new owner"})
    draft = Loader.objects.get(pk=active_loader.pk).open_version
    services.loader_version_approve(user=approver, version=services.loader_version_submit(user=editor, version=draft))
    LoaderVersion.objects.filter(loader=active_loader, number=2).update(decided_at=NOW - dt.timedelta(minutes=42))
    LoaderVersion.objects.filter(loader=active_loader, number=1).update(decided_at=START - dt.timedelta(days=1))
    rule = anomaly_rule()
    rule_evaluate(rule=rule, now=NOW - dt.timedelta(minutes=1))
    Run.objects.create(
        loader=active_loader, status="SUCCEEDED", started_at=NOW, finished_at=NOW, duration_seconds=1, rows_written=10
    )
    rule_evaluate(rule=rule, now=NOW + dt.timedelta(minutes=1))
    incident = Incident.objects.get(rule=rule)
    note = incident.metrics["after_version"]
    assert (note["number"], note["by"], note["minutes"]) == (2, approver.username, 42)
    assert f"began 42 minutes after version 2 was approved by {approver.username}" in incident.description


def test_missing_data_is_a_breach_of_its_own(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW - dt.timedelta(hours=6))
    rule = anomaly_rule()
    report = rule_evaluate(rule=rule, now=NOW)
    assert [d.action for d in report.decisions] == ["opened"]
    incident = Incident.objects.get(rule=rule)
    assert incident.title == "SALES-DAILY: rows written missing for 6 h 55 min"
    assert "No new rows written for 6 h 55 min" in incident.description
    assert "usually every 1 h" in incident.description


def test_signal_series_per_key(active_loader, anomaly_rule):
    rng = random.Random(3)
    signals = []
    at = START
    while at < NOW:
        for key in ("rows_loaded", "rows_skipped"):
            value = hourly_rows(at.hour, rng)
            signals.append(
                Signal(
                    loader=active_loader,
                    signal_key=key,
                    validation_status="SUCCESS",
                    captured_at=at,
                    received_at=at,
                    signal_value=str(value),
                    value_number=value,
                )
            )
        at += dt.timedelta(hours=1)
    Signal.objects.bulk_create(signals)
    rule = anomaly_rule(source="signal", metric_type="CUSTOM", per="signal_key")
    report = rule_evaluate(rule=rule, now=NOW)
    assert sorted(d.subject for d in report.decisions) == ["SALES-DAILY/rows_loaded", "SALES-DAILY/rows_skipped"]
    assert all(d.action == "clear" for d in report.decisions)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "signal"}, "params.signal_key"),
        ({"source": "rows_written", "signal_key": "x"}, "params.signal_key"),
        ({"source": "run_duration", "per": "signal_key"}, "params.per"),
        ({"sensitivity": "extreme"}, "params.sensitivity"),
        ({"source": "volume"}, "params.source"),
        ({"min_points": 1}, "params.min_points"),
        ({"missing_after": -1}, "params.missing_after"),
    ],
)
def test_bad_parameters_name_the_field(params, field):
    from etl_monitor.errors import InvalidInput
    from incidents.kinds import kind_get

    with pytest.raises(InvalidInput) as caught:
        kind_get("anomaly").validate_params(params)
    assert field in caught.value.errors


def test_changing_the_rules_settings_relearns_its_series(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule(sensitivity="low")
    rule_evaluate(rule=rule, now=NOW - dt.timedelta(hours=2))
    assert AnomalyState.objects.get(rule=rule).detector["config"]["sensitivity"] == "low"
    rule.params = {**rule.params, "sensitivity": "high"}
    rule.save()
    rule_evaluate(rule=rule, now=NOW)
    state = AnomalyState.objects.get(rule=rule)
    assert state.detector["config"]["sensitivity"] == "high"
    assert state.detector["points"] == 14 * 24, "learned again from ANOMALY_HISTORY_DAYS of history"


def test_a_paused_loader_is_not_measured_and_keeps_its_state(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule()
    rule_evaluate(rule=rule, now=NOW - dt.timedelta(hours=1))
    Loader.objects.filter(pk=active_loader.pk).update(is_paused=True)
    report = rule_evaluate(rule=rule, now=NOW)
    assert [(d.subject, d.action) for d in report.decisions] == []
    assert AnomalyState.objects.filter(rule=rule, subject="SALES-DAILY").exists()


def test_an_old_anomaly_in_the_history_a_new_rule_learns_from_is_not_news(active_loader, anomaly_rule):
    def with_old_drop(at, rng):
        return 10.0 if at == START + dt.timedelta(days=12) else hourly_rows(at.hour, rng)

    add_hourly_runs(active_loader, START, NOW, value=with_old_drop)
    rule = anomaly_rule()
    report = rule_evaluate(rule=rule, now=NOW)
    assert [d.action for d in report.decisions] == ["clear"]
    assert AnomalyState.objects.get(rule=rule).verdict["at"] == (NOW - dt.timedelta(minutes=55)).isoformat()


def test_of_several_new_points_an_anomalous_one_is_not_hidden_by_a_later_normal_one(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW - dt.timedelta(hours=3))
    rule = anomaly_rule()
    rule_evaluate(rule=rule, now=NOW - dt.timedelta(hours=3))

    def dropped_once(at, rng):
        return 10.0 if at == NOW - dt.timedelta(hours=2) else hourly_rows(at.hour, rng)

    add_hourly_runs(active_loader, NOW - dt.timedelta(hours=3), NOW, value=dropped_once, seed=5)
    report = rule_evaluate(rule=rule, now=NOW)
    assert [d.action for d in report.decisions] == ["opened"]
    assert Incident.objects.get(rule=rule).metrics["observed"] == 10.0
