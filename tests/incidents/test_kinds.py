"""Each built-in kind fires at its boundary and not before; parameters are validated per kind."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import InvalidInput
from incidents.detection import compare, rule_evaluate, rule_scope, rules_for_loader
from incidents.kinds import kind_get
from incidents.models import DetectionRule
from incidents.services import rule_save
from tests.incidents.conftest import NOW, add_run, add_signals


def measure(rule, now=NOW):
    return {m.subject: m for m in kind_get(rule.kind).evaluate(rule, rule_scope(rule), now)}


@pytest.mark.parametrize(("failed", "ok", "fires"), [(1, 19, False), (2, 18, True), (0, 5, False)])
def test_signal_failure_rate_boundary(rule_factory, active_loader, failed, ok, fires):
    add_signals(active_loader, failed=failed, ok=ok)
    rule = rule_factory("signal_failure_rate", threshold=5.0, operator="GT", window_seconds=300)
    m = measure(rule)["SALES-DAILY"]
    assert m.value == pytest.approx(100.0 * failed / (failed + ok))
    assert compare(m.value, rule.operator, rule.threshold) is fires


def test_signal_failure_rate_ignores_signals_outside_the_window(rule_factory, active_loader):
    add_signals(active_loader, failed=5, ok=0, at=NOW - dt.timedelta(minutes=10))
    assert measure(rule_factory("signal_failure_rate", threshold=5.0)) == {}


def test_signal_failure_rate_overall(rule_factory, active_loader, new_loader):
    other = new_loader("OTHER")
    add_signals(active_loader, failed=1, ok=9)
    add_signals(other, failed=0, ok=10)
    rule = rule_factory("signal_failure_rate", threshold=5.0, params={"per": "overall"})
    assert measure(rule)["all loaders"].value == pytest.approx(5.0)


def test_run_failed_counts_failed_runs_and_direct_failed_signals(rule_factory, active_loader):
    add_run(active_loader, status="FAILED", started=NOW - dt.timedelta(minutes=3))
    add_signals(active_loader, failed=2, ok=3)
    rule = rule_factory("run_failed", threshold=0.0, operator="GT")
    assert measure(rule)["SALES-DAILY"].value == 3


@pytest.mark.parametrize(("seconds", "fires"), [(45 * 60, False), (45 * 60 + 1, True)])
def test_run_duration_uses_the_active_versions_maximum(rule_factory, active_loader, seconds, fires):
    add_run(active_loader, started=NOW - dt.timedelta(hours=2), seconds=seconds)
    assert measure(rule_factory("run_duration", window_seconds=7200))["SALES-DAILY"].breached is fires


def test_run_duration_catches_a_run_still_running(rule_factory, active_loader):
    add_run(active_loader, status="RUNNING", started=NOW - dt.timedelta(minutes=50), seconds=None)
    m = measure(rule_factory("run_duration"))["SALES-DAILY"]
    assert m.breached and m.details["running"]


def test_run_duration_min_mode_flags_suspiciously_fast_runs(rule_factory, active_loader):
    add_run(active_loader, started=NOW - dt.timedelta(minutes=2), seconds=3)
    rule = rule_factory("run_duration", threshold=10.0, params={"mode": "min"})
    assert measure(rule)["SALES-DAILY"].breached


@pytest.mark.parametrize(("rows", "fires"), [(99, True), (100, False), (1000, False), (1001, True)])
def test_volume_out_of_range_boundaries(rule_factory, active_loader, rows, fires):
    add_run(active_loader, started=NOW - dt.timedelta(minutes=5), rows_written=rows)
    assert measure(rule_factory("volume_out_of_range", window_seconds=3600))["SALES-DAILY"].breached is fires


@pytest.mark.parametrize(
    ("aggregation", "expected"), [("avg", 20), ("max", 30), ("min", 10), ("sum", 60), ("count", 3)]
)
def test_metric_threshold_aggregations(rule_factory, active_loader, aggregation, expected):
    for value in (10, 20, 30):
        add_signals(active_loader, failed=0, ok=1, key="lag_seconds", value=value)
    rule = rule_factory("metric_threshold", params={"signal_key": "lag_seconds", "aggregation": aggregation})
    assert measure(rule)["SALES-DAILY"].value == expected


@pytest.mark.parametrize("aggregation", ["max", "last"])
@pytest.mark.parametrize("signal_key", ["", "payments"])
def test_metric_threshold_per_signal_key_gives_each_key_its_subject(
    rule_factory, active_loader, aggregation, signal_key
):
    # Captured statistics: one loader, one key per service (STATS-PERF's p99 latency).
    for key, value in (("payments", 2500), ("orders", 300), ("payments", 2400)):
        add_signals(active_loader, failed=0, ok=1, key=key, value=value)
    params = {"metric_type": "CUSTOM", "aggregation": aggregation, "per": "signal_key"}
    if signal_key:
        params["signal_key"] = signal_key
    rule = rule_factory("metric_threshold", operator="GT", threshold=2000.0, params=params)
    measured = measure(rule)
    expected = {"SALES-DAILY/payments"} | (set() if signal_key else {"SALES-DAILY/orders"})
    assert set(measured) == expected
    payments = measured["SALES-DAILY/payments"]
    assert payments.value in (2500, 2400) and payments.loader_id == active_loader.pk
    report = rule_evaluate(rule=rule, now=NOW)
    assert {(d.subject, d.action) for d in report.decisions} == {
        (subject, "opened" if subject.endswith("payments") else "clear") for subject in expected
    }
    # The batch path (several rules sharing one query) names the subjects the same way.
    from incidents.detection import rules_evaluate

    twin = rule_factory("metric_threshold", operator="GT", threshold=2000.0, params=params)
    reports = rules_evaluate(rules=[twin, rule], now=NOW)
    assert {d.subject for d in reports[0].decisions} == expected


def test_missed_run_fires_after_the_grace_period(rule_factory, active_loader):
    # SALES-DAILY: 30 2 * * * Europe/Berlin, grace 20 minutes. On 2026-11-28 that is 01:30 UTC.
    due = dt.datetime(2026, 11, 28, 1, 30, tzinfo=dt.UTC)
    active_loader.versions.update(decided_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))  # approved well before
    rule = rule_factory("missed_run")
    before_grace = measure(rule, now=due + dt.timedelta(minutes=19))["SALES-DAILY"]
    assert before_grace.details["expected_at"] == "2026-11-27T01:30:00+00:00"  # still yesterday's run
    late = measure(rule, now=due + dt.timedelta(minutes=21))["SALES-DAILY"]
    assert late.breached and late.details["expected_at"] == due.isoformat()
    add_run(active_loader, started=due + dt.timedelta(minutes=2))
    assert not measure(rule, now=due + dt.timedelta(minutes=21))["SALES-DAILY"].breached


def test_missed_run_follows_daylight_saving_time(rule_factory, active_loader):
    active_loader.versions.update(decided_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # "30 2 * * *" Europe/Berlin
    rule = rule_factory("missed_run")
    # In July Berlin is UTC+2: 02:30 local is 00:30 UTC; in November (UTC+1) it is 01:30 UTC.
    summer = measure(rule, now=dt.datetime(2026, 7, 10, 0, 55, tzinfo=dt.UTC))["SALES-DAILY"]
    assert summer.details["expected_at"] == "2026-07-10T00:30:00+00:00"
    winter = measure(rule, now=dt.datetime(2026, 11, 28, 1, 55, tzinfo=dt.UTC))["SALES-DAILY"]
    assert winter.details["expected_at"] == "2026-11-28T01:30:00+00:00"


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("signal_failure_rate", {"per": "team"}, "params.per"),
        ("signal_failure_rate", {"bogus": 1}, "params.bogus"),
        ("metric_threshold", {}, "params.signal_key"),
        ("metric_threshold", {"signal_key": "x", "aggregation": "median"}, "params.aggregation"),
        ("run_duration", {"mode": 3}, "params.mode"),
        ("missed_run", {"early_tolerance_fraction": 0.9}, "params.early_tolerance_fraction"),
        ("missed_run", {"early_tolerance_fraction": "a quarter"}, "params.early_tolerance_fraction"),
        ("missed_run", {"early_tolerance_seconds": -1}, "params.early_tolerance_seconds"),
        ("run_failed", {"resolve_on_success": "yes"}, "params.resolve_on_success"),
        ("freshness", {"sla_minutes": 5}, "params.sla_minutes"),
    ],
)
def test_parameters_are_validated_per_kind(kind, params, field):
    with pytest.raises(InvalidInput) as exc:
        kind_get(kind).validate_params(params)
    assert field in exc.value.errors


def test_an_unknown_kind_is_named():
    with pytest.raises(InvalidInput, match="Unknown kind 'sql_query'"):
        kind_get("sql_query")


@pytest.mark.parametrize(
    ("value", "operator", "threshold", "expected"),
    [
        (5, "GT", 5, False),
        (6, "GT", 5, True),
        (5, "GTE", 5, True),
        (4, "LT", 5, True),
        (5, "LTE", 5, True),
        (5, "EQ", 5, True),
        (4, "NEQ", 5, True),
        (None, "EXISTS", None, False),
        (0, "EXISTS", None, True),
        (None, "GT", 5, False),
    ],
)
def test_operators(value, operator, threshold, expected):
    assert compare(value, operator, threshold) is expected


def test_evaluation_records_when_the_rule_ran(rule_factory, active_loader):
    rule = rule_factory("signal_failure_rate", threshold=5.0, interval_seconds=60)
    rule_evaluate(rule=rule, now=NOW)
    rule.refresh_from_db()
    assert rule.last_evaluated_at == NOW and rule.next_due_at == NOW + dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("kind", "params", "threshold"),
    [
        ("missed_run", {}, None),  # the kind decides against the schedule
        ("volume_out_of_range", {}, None),  # … against the active version's expected rows
        ("run_duration", {"mode": "max"}, None),  # … against the active version's maximum duration
        ("signal_failure_rate", {}, 5.0),  # the kind's default threshold
        ("run_failed", {}, 0.0),
    ],
)
def test_a_rule_without_threshold_gets_what_its_kind_decides(admin_user, kind, params, threshold):
    rule = rule_save(user=admin_user, data={"name": kind, "kind": kind, "params": params})
    assert DetectionRule.objects.get(pk=rule.pk).threshold == threshold


def test_a_kind_without_default_threshold_asks_for_one(admin_user):
    with pytest.raises(InvalidInput) as exc:
        rule_save(user=admin_user, data={"name": "m", "kind": "metric_threshold", "params": {"signal_key": "x"}})
    assert exc.value.errors["threshold"] == ["metric_threshold needs a threshold."]
    with pytest.raises(InvalidInput) as exc:
        rule_save(user=admin_user, data={"name": "d", "kind": "run_duration", "params": {"mode": "min"}})
    assert exc.value.errors["threshold"] == ["run_duration with mode min needs a threshold (seconds)."]


def test_only_kinds_a_failure_can_breach_take_the_fast_path(rule_factory, active_loader):
    DetectionRule.objects.update(enabled=False)  # the seeded rules
    kinds = (
        "signal_failure_rate",
        "run_failed",
        "metric_threshold",
        "run_duration",
        "volume_out_of_range",
        "missed_run",
    )
    params = {"metric_threshold": {"signal_key": "x"}}
    rules = {rule_factory(kind, threshold=1.0, params=params.get(kind, {})).pk: kind for kind in kinds}
    fast = {rules[pk] for pk in rules_for_loader(active_loader.pk)}
    assert fast == {"signal_failure_rate", "run_failed", "metric_threshold"}


@pytest.mark.parametrize("params", [["mode"], "min", 3, {"mode": "sideways"}])
def test_run_duration_parameters_of_the_wrong_shape_are_named_not_a_crash(admin_user, params):
    """A list, string or number as params (or an unknown mode) is an error on params; the mode=min
    check must not read them (a non-empty list used to answer 500)."""
    with pytest.raises(InvalidInput) as exc:
        rule_save(user=admin_user, data={"name": "d", "kind": "run_duration", "params": params})
    assert [name for name in exc.value.errors if name.split(".")[0] == "params"]
    assert not DetectionRule.objects.filter(name="d").exists()


def test_an_unknown_scope_tag_or_team_is_named_on_its_field(admin_user):
    data = {"name": "scoped", "kind": "run_failed"}
    with pytest.raises(InvalidInput) as exc:
        rule_save(user=admin_user, data={**data, "scope": "TAG", "scope_tag": "no-such-tag"})
    assert exc.value.errors["scope_tag"][0] == "Unknown tag 'no-such-tag'."
    with pytest.raises(InvalidInput) as exc:
        rule_save(user=admin_user, data={**data, "scope": "OWNER", "scope_owner": "nobody"})
    assert exc.value.errors["scope_owner"][0] == "Unknown team 'nobody'."
    assert not DetectionRule.objects.filter(name="scoped").exists()
