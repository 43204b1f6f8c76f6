"""What fired, in words, per rule kind: the measured value against the threshold."""

from __future__ import annotations

import pytest

from incidents.wording import what_fired


@pytest.mark.parametrize(
    ("kind", "params", "metrics", "sentence"),
    [
        (
            "run_duration",
            {"mode": "max"},
            {"value": 3120.0, "threshold": None, "operator": "GT", "limit_seconds": 2700.0, "running": False},
            "Run duration 52 min > 45 min allowed",
        ),
        (
            "run_duration",
            {"mode": "max"},
            {"value": 3120.0, "threshold": None, "operator": "GT", "limit_seconds": 2700.0, "running": True},
            "Run still running after 52 min > 45 min allowed",
        ),
        (
            "run_duration",
            {"mode": "min"},
            {"value": 30.0, "threshold": 120.0, "operator": "GT", "limit_seconds": 120.0},
            "Run finished in 30 s < 2 min expected at least",
        ),
        (
            "volume_out_of_range",
            {},
            {"value": 12.0, "threshold": None, "operator": "GT", "expected_min": 100, "expected_max": 1000},
            "12 rows written < 100 expected at least",
        ),
        (
            "volume_out_of_range",
            {},
            {"value": 5000.0, "threshold": None, "operator": "GT", "expected_min": 100, "expected_max": 1000},
            "5,000 rows written > 1,000 expected at most",
        ),
        (
            "run_failed",
            {},
            {"value": 3.0, "threshold": 0.0, "operator": "GT", "failed_runs": 2, "failed_signals": 1},
            "2 failed runs and 1 FAILED signal in the last 1 h",
        ),
        (
            "signal_failure_rate",
            {"per": "loader"},
            {"value": 50.0, "threshold": 5.0, "operator": "GT", "failed": 5, "total": 10},
            "50 % of signals FAILED (5 of 10) > 5 % allowed, over 1 h",
        ),
        (
            "metric_threshold",
            {"signal_key": "row_lag"},
            {"value": 120.5, "threshold": 100.0, "operator": "GTE", "aggregation": "max"},
            "max of row_lag 120.5 ≥ 100 over 1 h",
        ),
        (
            "missed_run",
            {},
            {
                "value": 35.0,
                "threshold": None,
                "operator": "GT",
                "expected_at": "2026-12-03T01:30:00+00:00",
                "schedule": "30 2 * * *",
                "timezone": "Europe/Berlin",
                "grace_minutes": 20,
            },
            "The run due Thu 03 Dec 02:30 (Europe/Berlin) did not start: 35 min late, grace 20 min",
        ),
        (
            "freshness",
            {},
            {"value": 1500.0, "threshold": None, "sla_minutes": 1440, "last_data_at": "Wed 02 Dec 02:41 CET"},
            "No fresh data for 1 d 1 h > 1 d allowed (last data: Wed 02 Dec 02:41 CET)",
        ),
        (
            "promql_threshold",
            {},
            {"value": 0.93, "threshold": 0.9, "operator": "GT"},
            "promql_threshold: 0.93 > 0.9",
        ),
    ],
)
def test_what_fired_reads_as_a_sentence_per_rule_kind(kind, params, metrics, sentence):
    assert what_fired(kind, metrics, params=params, window_seconds=3600) == sentence


def test_a_contract_limit_the_reader_may_not_see_is_left_out():
    metrics = {"value": 3120.0, "threshold": None, "limit_seconds": 2700.0}
    sentence = what_fired("run_duration", metrics, params={"mode": "max"}, hidden={"max_duration_minutes"})
    assert sentence == "Run duration 52 min > (limit hidden) allowed"
    volume = {"value": 12.0, "expected_min": 100, "expected_max": 1000}
    assert "100" not in what_fired("volume_out_of_range", volume, hidden={"expected_rows_min"})
    stale = {"value": 1500.0, "sla_minutes": 1440, "last_data_at": "Wed 02 Dec 02:41 CET"}
    sentence = what_fired("freshness", stale, hidden={"freshness_sla_minutes"})
    assert "1 d allowed" not in sentence and "freshness limit is hidden" in sentence


def test_a_rule_threshold_is_shown_even_when_the_contract_limit_is_hidden():
    metrics = {"value": 3120.0, "threshold": 1800.0, "limit_seconds": 1800.0}
    assert (
        what_fired("run_duration", metrics, hidden={"max_duration_minutes"}) == "Run duration 52 min > 30 min allowed"
    )


def test_an_incident_from_outside_without_a_value_has_no_sentence():
    assert what_fired(None, {"alertname": "DiskFull"}) == ""
    assert what_fired(None, {"value": 3}) == "Measured: 3"


def test_the_rules_list_reads_conditions_in_words(client, viewer):
    from incidents.models import DetectionRule

    DetectionRule.objects.create(name="w-rate", kind="signal_failure_rate", threshold=5, window_seconds=900)
    DetectionRule.objects.create(name="w-missed", kind="missed_run", threshold=None, window_seconds=3600)
    client.force_login(viewer)
    page = client.get("/admin/incidents/detectionrule/?q=w-").content.decode()
    assert "&gt; 5 over 15 min" in page and "over 1 h" in page
    assert "3600 s" not in page and "&gt; over" not in page
