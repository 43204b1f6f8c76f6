"""The expected band of an anomaly series: replayed, streaming, with the engine's restarts and verdicts."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from incidents.anomaly.band import BandUnavailable, anomaly_band, band_thin
from incidents.models import AnomalyState
from loaders import services
from loaders.models import Loader, LoaderVersion
from tests.incidents.conftest import add_run, add_signals
from tests.incidents.test_anomaly_rule import NOW, START, add_hourly_runs, anomaly_rule, evaluate_hourly, hourly_rows

__all__ = ["anomaly_rule"]  # the fixture, imported to be used here


def approve_doubled_rows(loader: Loader, editor, approver, at: dt.datetime) -> None:
    """Version 2 expects twice the rows, approved at ``at`` (a known change point)."""
    services.loader_edit(user=editor, loader=loader, data={"expected_rows_max": 40_000})
    draft = Loader.objects.get(pk=loader.pk).open_version
    services.loader_version_approve(user=approver, version=services.loader_version_submit(user=editor, version=draft))
    LoaderVersion.objects.filter(loader=loader, number=2).update(decided_at=at)
    LoaderVersion.objects.filter(loader=loader, number=1).update(decided_at=START - dt.timedelta(days=1))


def test_the_last_point_has_the_engines_verdict(active_loader, anomaly_rule, settings):
    settings.ANOMALY_HISTORY_DAYS = 30  # the engine and the band learn from the same first point
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule()
    evaluate_hourly(rule, NOW - dt.timedelta(days=2), NOW)
    engine = AnomalyState.objects.get(rule=rule).verdict

    band = anomaly_band(rule, "SALES-DAILY", since=NOW - dt.timedelta(days=3), until=NOW)

    assert band.points[-1] == engine
    assert band.total == len(band.points) == 72  # one run an hour, finished at :05
    assert band.status == "normal"
    assert all(p["expected_low"] <= p["expected"] <= p["expected_high"] for p in band.points)


def test_an_approval_restarts_the_band_as_it_restarts_the_engine(
    active_loader, anomaly_rule, editor, approver, settings
):
    settings.ANOMALY_HISTORY_DAYS = 30
    shift_at = NOW - dt.timedelta(days=1)

    def doubled(at, rng):
        return hourly_rows(at.hour, rng) * (2 if at >= shift_at else 1)

    add_hourly_runs(active_loader, START, NOW, value=doubled)
    approve_doubled_rows(active_loader, editor, approver, shift_at - dt.timedelta(minutes=30))
    rule = anomaly_rule()
    evaluate_hourly(rule, shift_at - dt.timedelta(days=1), NOW)
    engine = AnomalyState.objects.get(rule=rule)

    band = anomaly_band(rule, "SALES-DAILY", since=shift_at - dt.timedelta(hours=3), until=NOW)

    assert band.points[-1] == engine.verdict
    relearning = [p for p in band.points if p["learning"]]
    assert 1 <= len(relearning) <= 6, "learning again for a few points after the approval"
    assert dt.datetime.fromisoformat(relearning[0]["at"]) > shift_at
    assert not any(p["is_anomaly"] for p in band.points), "the approved change is not an anomaly"


def test_the_band_is_learned_without_looking_ahead(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule()
    until = NOW - dt.timedelta(days=2)
    short = anomaly_band(rule, "SALES-DAILY", since=until - dt.timedelta(days=1), until=until)
    long = anomaly_band(rule, "SALES-DAILY", since=until - dt.timedelta(days=1), until=NOW)
    assert long.points[: len(short.points)] == short.points


def test_a_drop_is_marked_anomalous(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    add_run(active_loader, started=NOW, seconds=300, rows_written=3_000)  # 14:00 usually writes about 13,500
    band = anomaly_band(
        rule := anomaly_rule(), "SALES-DAILY", since=NOW - dt.timedelta(days=1), until=NOW + dt.timedelta(hours=1)
    )
    assert band.points[-1]["is_anomaly"] is True
    assert band.points[-1]["value"] == 3_000
    assert band.status == "anomalous"
    assert rule.pk == band.rule_id
    data = band.as_json()
    assert data["anomaly"][-1] is True and data["low"][-1] > 3_000
    assert len(data["t"]) == len(data["value"]) == len(data["low"]) == len(data["high"])


def test_a_short_history_is_learning_with_the_days_it_has(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, NOW - dt.timedelta(days=3, hours=1), NOW)
    band = anomaly_band(anomaly_rule(), "SALES-DAILY", since=NOW - dt.timedelta(days=14), until=NOW)
    assert band.status == "learning"
    assert band.status_words == "learning: 3 of 7 days of history"
    assert all(p["learning"] for p in band.points)
    assert set(band.as_json()["low"]) == {None}, "no band is drawn while learning"


def test_an_empty_series_is_learning_with_no_data(active_loader, anomaly_rule):
    band = anomaly_band(anomaly_rule(), "SALES-DAILY", since=NOW - dt.timedelta(days=14), until=NOW)
    assert (band.points, band.status, band.status_words) == ([], "learning", "learning: no data yet")


def test_only_anomaly_rules_and_known_loaders_have_a_band(active_loader, anomaly_rule, rule_factory):
    threshold = rule_factory("run_duration", threshold=60)
    with pytest.raises(BandUnavailable, match="is a run_duration rule"):
        anomaly_band(threshold, "SALES-DAILY", since=START, until=NOW)
    with pytest.raises(BandUnavailable, match="no loader for subject 'NOPE'"):
        anomaly_band(anomaly_rule(), "NOPE", since=START, until=NOW)


def test_thinning_keeps_every_anomaly_and_the_last_point():
    points = [{"at": str(i), "is_anomaly": i % 1000 == 7} for i in range(20_000)]
    kept = band_thin(points, 5000)
    assert len(kept) <= 5000
    assert [p for p in kept if p["is_anomaly"]] == [p for p in points if p["is_anomaly"]]
    assert kept[-1] is points[-1]
    assert band_thin(points[:10], 5000) == points[:10]


def test_a_long_window_is_thinned(active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    band = anomaly_band(anomaly_rule(), "SALES-DAILY", since=START, until=NOW, limit=100)
    assert band.total == 21 * 24
    assert len(band.points) <= 100


def test_a_series_per_signal_key_replays_only_its_key(active_loader, anomaly_rule, settings):
    settings.ANOMALY_HISTORY_DAYS = 30
    rng = random.Random(3)
    at = START
    while at < NOW:
        for key, scale in (("rows_loaded", 1), ("rows_skipped", 0.01)):
            add_signals(active_loader, failed=0, ok=1, at=at, key=key, value=hourly_rows(at.hour, rng) * scale)
        at += dt.timedelta(hours=1)
    rule = anomaly_rule(source="signal", metric_type="CUSTOM", per="signal_key")
    evaluate_hourly(rule, NOW - dt.timedelta(hours=3), NOW)
    for subject in ("SALES-DAILY/rows_loaded", "SALES-DAILY/rows_skipped"):
        band = anomaly_band(rule, subject, since=NOW - dt.timedelta(days=2), until=NOW)
        assert band.points[-1] == AnomalyState.objects.get(rule=rule, subject=subject).verdict
        assert band.total == 47  # captured 30 s before each hour: 12:59:30 two days ago to 11:59:30
