"""A backtest lists exactly the incidents the engine would open on the same clock, and writes nothing."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from etl_monitor.errors import InvalidInput
from incidents.backtest import WouldBeIncident, rule_backtest
from incidents.detection import rule_evaluate
from incidents.models import AnomalyState, DetectionRule, Incident, IncidentEvent, RuleSubjectState, Silence
from loaders import services
from loaders.models import Loader
from signals_app.models import Run, Signal
from tests.incidents.conftest import NOW
from tests.incidents.test_anomaly_rule import add_hourly_runs, hourly_rows


def engine_replay(rule: DetectionRule, days: int, step: int) -> list[tuple]:
    """The engine itself, run at the backtest's ticks: the incidents it opened, as the backtest lists them."""
    at = NOW - dt.timedelta(days=days)
    while at <= NOW:
        report = rule_evaluate(rule=rule, now=at)
        assert not report.error, report.error
        at += dt.timedelta(seconds=step)
    return [
        (i.subject, i.first_seen, i.resolved_at, i.occurrences, i.flapping)
        for i in Incident.objects.filter(rule=rule).order_by("first_seen", "subject")
    ]


def listed(incidents: list[WouldBeIncident]) -> list[tuple]:
    return [(i.subject, i.start, i.end, i.occurrences, i.flapping) for i in incidents]


def nothing_written() -> None:
    for model in (Incident, IncidentEvent, RuleSubjectState, AnomalyState):
        assert not model.objects.exists(), f"the backtest wrote {model.__name__} rows"


def other_loader(code: str, editor, approver) -> Loader:
    data = {
        "loader_code": code,
        "name": code,
        "owner": "data-platform",
        "schedule_cron": "0 * * * *",
        "schedule_timezone": "UTC",
        "grace_minutes": 5,
    }
    loader = services.loader_create(user=editor, data=data)
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=loader.open_version)
    )
    return Loader.objects.get(pk=loader.pk)


def add_lag_signals(loader: Loader, seed: int, end: dt.datetime = NOW) -> None:
    """A lag every 5 minutes for a day that breaches in runs of various lengths: incidents that open,
    wait to stay clear, resolve, reopen, flap, and breaches too short to open (open_after=2)."""
    rng = random.Random(seed)
    breaching = False
    rows = []
    at = end - dt.timedelta(days=1, minutes=10)
    while at <= end:
        if rng.random() < 0.08:
            breaching = not breaching
        if rng.random() > 0.1:  # a signal now and then goes missing: no measurement, no breach
            value = rng.uniform(12, 40) if breaching else rng.uniform(0, 9)
            rows.append(
                Signal(
                    loader=loader,
                    signal_key="lag",
                    validation_status="SUCCESS",
                    captured_at=at,
                    received_at=at,
                    signal_value=str(value),
                    value_number=value,
                )
            )
        at += dt.timedelta(minutes=5)
    Signal.objects.bulk_create(rows)


def test_a_threshold_rule_lists_exactly_what_the_engine_opens(active_loader, editor, approver, rule_factory):
    loaders = [active_loader, other_loader("LAG-B", editor, approver), other_loader("LAG-C", editor, approver)]
    for seed, loader in enumerate(loaders):
        add_lag_signals(loader, seed)
    rule = rule_factory(
        "metric_threshold",
        params={"signal_key": "lag", "aggregation": "max"},
        threshold=10,
        window_seconds=300,
        interval_seconds=300,
        open_after=2,
        resolve_after_seconds=900,
    )

    result = rule_backtest(rule=rule, days=1, now=NOW)
    nothing_written()
    engine = engine_replay(rule, days=1, step=300)

    assert (result.step_seconds, result.evaluations) == (300, 289)
    assert listed(result.incidents) == engine
    kinds = {(end is None, occurrences > 1, flapping) for _s, _start, end, occurrences, flapping in engine}
    assert len(engine) >= 6 and len(kinds) >= 3, f"the data should open, resolve, reopen and flap: {kinds}"
    assert result.per_subject == {code: sum(1 for e in engine if e[0] == code) for code in result.per_subject}
    assert sum(result.per_subject.values()) == len(engine)
    for incident in result.incidents:
        assert incident.peak is not None and incident.peak > 10, "the peak is the highest breaching value"


def test_an_anomaly_rule_lists_exactly_what_the_engine_opens(active_loader, editor, approver, rule_factory):
    start = NOW - dt.timedelta(days=21)
    drop_at = NOW - dt.timedelta(days=2, hours=5)

    def with_drops(at, rng):
        rows = hourly_rows(at.hour, rng)
        return rows * 0.2 if drop_at <= at < drop_at + dt.timedelta(hours=3) else rows

    add_hourly_runs(active_loader, start, NOW, value=with_drops)
    quiet = other_loader("QUIET-HOURLY", editor, approver)
    add_hourly_runs(quiet, start, NOW - dt.timedelta(days=1), seed=2)  # then stops: missing data
    add_hourly_runs(other_loader("STEADY", editor, approver), start, NOW, seed=3)
    rule = rule_factory(
        "anomaly",
        params={"source": "rows_written"},
        threshold=None,
        interval_seconds=3600,
        resolve_after_seconds=3600,
        message="{subject}: {series} {headline}",
    )

    result = rule_backtest(rule=rule, days=4, now=NOW)
    nothing_written()
    engine = engine_replay(rule, days=4, step=3600)

    assert listed(result.incidents) == engine
    assert {subject for subject, *_ in engine} >= {"SALES-DAILY", "QUIET-HOURLY"}
    drop = next(i for i in result.incidents if i.subject == "SALES-DAILY")
    assert drop.peak_score is not None and drop.peak_score >= 0.9
    assert drop.peak is not None and drop.peak < 5_000, "the peak is the value at the highest score"
    assert result.subjects_measured == 3


def test_silences_do_not_keep_an_incident_from_being_listed(active_loader, rule_factory):
    add_lag_signals(active_loader, 0)
    Silence.objects.create(loader=active_loader, starts_at=NOW - dt.timedelta(days=2), ends_at=NOW, comment="upgrade")
    rule = rule_factory(
        "metric_threshold", params={"signal_key": "lag"}, threshold=10, window_seconds=300, interval_seconds=300
    )
    result = rule_backtest(rule=rule, days=1, now=NOW)
    assert listed(result.incidents) == engine_replay(rule, days=1, step=300)
    assert result.incidents


def test_a_draft_rule_is_backtested_without_being_saved(active_loader, editor, approver):
    add_lag_signals(active_loader, 1)
    add_lag_signals(other_loader("LAG-B", editor, approver), 2)
    draft = DetectionRule(
        name="draft",
        kind="metric_threshold",
        params={"signal_key": "lag"},
        threshold=10,
        window_seconds=300,
        interval_seconds=300,
        scope="LOADERS",
    )
    result = rule_backtest(rule=draft, days=1, now=NOW, scope_loader_ids=[active_loader.pk])
    assert result.incidents and {i.subject for i in result.incidents} == {"SALES-DAILY"}
    assert draft.pk is None and not DetectionRule.objects.filter(name="draft").exists()
    nothing_written()
    with pytest.raises(InvalidInput) as refused:
        rule_backtest(rule=draft, days=1, now=NOW)
    assert "scope_loaders" in refused.value.errors


def test_a_draft_anomaly_rule_keeps_its_baselines_in_memory(active_loader):
    add_hourly_runs(active_loader, NOW - dt.timedelta(days=20), NOW - dt.timedelta(hours=8))
    draft = DetectionRule(name="draft", kind="anomaly", params={"source": "rows_written"}, interval_seconds=3600)
    result = rule_backtest(rule=draft, days=2, now=NOW)
    assert [i.subject for i in result.incidents] == ["SALES-DAILY"], "the loader stopped sending: missing data"
    assert result.incidents[0].end is None
    nothing_written()


@pytest.mark.parametrize("days", [0, 91, -3, "many", None, 2.5, True])
def test_days_out_of_range_are_refused_naming_days(rule_factory, days):
    rule = rule_factory("run_failed")
    with pytest.raises(InvalidInput) as refused:
        rule_backtest(rule=rule, days=days, now=NOW)
    assert list(refused.value.errors) == ["days"]


def test_a_short_interval_is_stretched_to_the_evaluation_cap_and_says_so(rule_factory, settings):
    settings.BACKTEST_MAX_EVALUATIONS = 100
    rule = rule_factory("run_failed", interval_seconds=60)
    result = rule_backtest(rule=rule, days=30, now=NOW)
    assert result.evaluations <= 100
    assert result.step_seconds == 26_220  # 30 days over 99 steps, rounded up to a whole minute
    assert "instead of the rule's 1 min" in result.notes[0]
    hourly = rule_backtest(rule=rule_factory("run_failed", interval_seconds=3600), days=3, now=NOW)
    assert (hourly.step_seconds, hourly.evaluations) == (3600, 73)
    assert hourly.notes == ["Evaluated every 1 h, as the rule is."]


def test_an_unknown_kind_is_refused_naming_kind():
    with pytest.raises(InvalidInput) as refused:
        rule_backtest(rule=DetectionRule(name="x", kind="nope"), days=1, now=NOW)
    assert list(refused.value.errors) == ["kind"]


def test_failed_runs_open_and_resolve_as_in_the_engine(active_loader, rule_factory):
    for hours, status in ((30, "FAILED"), (20, "SUCCEEDED"), (10, "FAILED"), (9, "FAILED")):
        Run.objects.create(
            loader=active_loader,
            status=status,
            started_at=NOW - dt.timedelta(hours=hours),
            finished_at=NOW - dt.timedelta(hours=hours, minutes=-5),
        )
    rule = rule_factory("run_failed", threshold=0, window_seconds=3 * 3600, interval_seconds=1800)
    result = rule_backtest(rule=rule, days=2, now=NOW)
    assert listed(result.incidents) == engine_replay(rule, days=2, step=1800)
    assert len(result.incidents) == 2


def test_a_past_tick_does_not_see_later_runs(active_loader, rule_factory):
    """volume_out_of_range judges the latest run finished by the tick, not the latest run stored."""
    for hours, rows in ((30, 5), (1, 500)):  # SALES-DAILY expects 100–1,000 rows
        Run.objects.create(
            loader=active_loader,
            status="SUCCEEDED",
            started_at=NOW - dt.timedelta(hours=hours, minutes=5),
            finished_at=NOW - dt.timedelta(hours=hours),
            rows_written=rows,
        )
    rule = rule_factory("volume_out_of_range", window_seconds=2 * 86400, interval_seconds=3600)
    result = rule_backtest(rule=rule, days=2, now=NOW)
    assert [(i.start, i.end, i.peak) for i in result.incidents] == [
        (NOW - dt.timedelta(hours=30), NOW - dt.timedelta(hours=1), 5.0)
    ]
    assert listed(result.incidents) == engine_replay(rule, days=2, step=3600)


def test_a_source_that_cannot_be_queried_is_reported_not_raised(rule_factory, settings):
    settings.PROMETHEUS_URL = ""
    rule = rule_factory("promql_threshold", params={"query": "up"}, threshold=1, interval_seconds=3600)
    result = rule_backtest(rule=rule, days=1, now=NOW)
    assert result.incidents == []
    assert len(result.errors) == 5 and "prometheus" in result.errors[0]
    assert result.errors[0].startswith("2026-11-26T12:00:00+00:00: ")
    assert "25 of 25 evaluations failed (the first errors are listed)." in result.notes
