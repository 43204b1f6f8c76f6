"""Batch evaluation: rules evaluated together share their reads and writes but decide exactly as
if each were evaluated alone."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from incidents.detection import (
    _Refire,
    _refires_apply,
    rule_evaluate,
    rule_scope,
    rules_evaluate,
    rules_evaluate_claimed,
)
from incidents.kinds import kind_get
from incidents.models import DetectionRule, Incident
from incidents.services import incident_resolve
from incidents.tasks import detection_tick
from loaders.models import Loader, Tag
from tests.incidents.conftest import NOW, add_signals, rule_held_by_another_worker


@pytest.fixture
def two_loaders(active_loader, new_loader, editor, approver):
    from loaders import services

    other = new_loader("HR-WEEKLY")
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=other.open_version)
    )
    return active_loader, Loader.objects.get(pk=other.pk)


def _only_our_rules():
    DetectionRule.objects.update(enabled=False)


def test_rules_of_one_batch_decide_as_each_would_alone(two_loaders, rule_factory):
    _only_our_rules()
    sales, hr = two_loaders
    add_signals(sales, failed=1, ok=9, key="lag", value=50.0)  # 10% failed, lag 50
    add_signals(hr, failed=0, ok=10, key="lag", value=5.0)
    add_signals(hr, failed=0, ok=2, key="rows", value=700.0)
    rules = [
        rule_factory("signal_failure_rate", threshold=5.0),  # sales breaches
        rule_factory("signal_failure_rate", threshold=20.0),  # same measurement, nobody breaches
        rule_factory("metric_threshold", threshold=10.0, params={"signal_key": "lag", "aggregation": "avg"}),
        rule_factory("metric_threshold", threshold=600.0, params={"signal_key": "rows", "aggregation": "max"}),
        rule_factory("metric_threshold", threshold=11.0, params={"signal_key": "lag", "aggregation": "count"}),
    ]
    reports = rules_evaluate(rules=rules, now=NOW)
    assert [r.rule for r in reports] == [r.name for r in rules]
    actions = [{d.subject: d.action for d in r.decisions} for r in reports]
    assert actions == [
        {"SALES-DAILY": "opened", "HR-WEEKLY": "clear"},
        {"SALES-DAILY": "clear", "HR-WEEKLY": "clear"},
        {"SALES-DAILY": "opened", "HR-WEEKLY": "clear"},
        {"HR-WEEKLY": "opened"},
        {"SALES-DAILY": "clear", "HR-WEEKLY": "clear"},  # 10 signals each: not above 11
    ]
    values = {(r.rule, d.subject): d.value for r in reports for d in r.decisions}
    assert values[(rules[2].name, "SALES-DAILY")] == 50.0 and values[(rules[3].name, "HR-WEEKLY")] == 700.0
    assert values[(rules[4].name, "HR-WEEKLY")] == 10.0
    assert set(Incident.objects.values_list("rule_id", "subject")) == {
        (rules[0].pk, "SALES-DAILY"),
        (rules[2].pk, "SALES-DAILY"),
        (rules[3].pk, "HR-WEEKLY"),
    }
    for rule in rules:
        rule.refresh_from_db()
        assert rule.last_evaluated_at == NOW and rule.last_error == ""


def test_grouped_metric_query_measures_what_each_rule_measures_alone(two_loaders, rule_factory):
    sales, hr = two_loaders
    add_signals(sales, failed=0, ok=3, key="lag", value=4.0)
    add_signals(sales, failed=0, ok=1, key="lag", value=10.0)
    add_signals(hr, failed=0, ok=2, key="rows", value=7.0)
    rules = [
        rule_factory("metric_threshold", threshold=1.0, params={"signal_key": key, "aggregation": agg})
        for key in ("lag", "rows")
        for agg in ("avg", "max", "min", "sum", "count")
    ]
    kind = kind_get("metric_threshold")
    together = kind.evaluate_many(rules, rule_scope, NOW)
    for rule in rules:
        alone = kind.evaluate(rule, rule_scope(rule), NOW)
        assert sorted((m.subject, m.value) for m in together[rule.pk]) == sorted((m.subject, m.value) for m in alone)
    assert [m.value for m in together[rules[0].pk]] == [5.5]  # avg of 4, 4, 4, 10


def test_rules_with_different_scopes_do_not_share_a_measurement(two_loaders, rule_factory):
    _only_our_rules()
    sales, hr = two_loaders
    tag = Tag.objects.create(name="finance")
    sales.tags.add(tag)
    add_signals(sales, failed=5, ok=5)
    add_signals(hr, failed=5, ok=5)
    everyone = rule_factory("signal_failure_rate", threshold=5.0)
    finance = rule_factory("signal_failure_rate", threshold=5.0, scope="TAG", scope_tag=tag)
    reports = rules_evaluate(rules=[everyone, finance], now=NOW)
    assert {d.subject for d in reports[0].decisions} == {"SALES-DAILY", "HR-WEEKLY"}
    assert {d.subject for d in reports[1].decisions} == {"SALES-DAILY"}


def test_a_broken_rule_in_a_batch_is_reported_and_the_others_complete(two_loaders, rule_factory):
    _only_our_rules()
    sales, _hr = two_loaders
    add_signals(sales, failed=5, ok=5)
    broken = rule_factory("metric_threshold", threshold=1.0, params={"signal_key": "x", "aggregation": "nope"})
    missing = rule_factory("tempo_span_count", threshold=1.0)
    good = rule_factory("signal_failure_rate", threshold=5.0)
    reports = rules_evaluate(rules=[broken, missing, good], now=NOW)
    assert reports[0].error.startswith("evaluation failed: KeyError")
    assert reports[1].error == "kind 'tempo_span_count' is not available in this installation"
    assert reports[2].error == "" and reports[2].decisions[0].action == "opened"
    broken.refresh_from_db(), missing.refresh_from_db(), good.refresh_from_db()
    assert broken.last_error.startswith("evaluation failed") and missing.last_error.startswith("kind 'tempo")
    assert good.last_error == "" and good.next_due_at == NOW + dt.timedelta(seconds=good.interval_seconds)
    assert broken.next_due_at == NOW + dt.timedelta(seconds=broken.interval_seconds)  # not retried every tick


def test_an_ongoing_breach_is_refreshed_in_the_batch_update_without_counting_an_occurrence(active_loader, rule_factory):
    _only_our_rules()
    add_signals(active_loader, failed=5, ok=5)
    rule = rule_factory("signal_failure_rate", threshold=5.0, message="{subject}: {value}% failed")
    rule_evaluate(rule=rule, now=NOW)
    add_signals(active_loader, failed=9, ok=1, at=NOW + dt.timedelta(seconds=60))
    report = rule_evaluate(rule=rule, now=NOW + dt.timedelta(seconds=60))
    assert report.decisions[0].action == "ongoing"
    incident = Incident.objects.get()
    assert incident.occurrences == 1 and incident.last_seen == NOW + dt.timedelta(seconds=60)  # one breach
    assert incident.metrics["value"] == pytest.approx(100.0 * 14 / 20)  # the latest measurement
    assert incident.title == "SALES-DAILY: 70% failed" == incident.description  # the count as it is now
    assert list(incident.events.values_list("kind", flat=True)) == ["OPENED"]  # no timeline entry yet


def test_a_refire_of_an_incident_resolved_meanwhile_takes_the_full_path(active_loader, rule_factory, operator):
    _only_our_rules()
    add_signals(active_loader, failed=5, ok=5)
    rule = rule_factory("signal_failure_rate", threshold=5.0)
    report = rule_evaluate(rule=rule, now=NOW)
    incident = Incident.objects.get()
    # The batch read the incident as open; a person resolves it before the batch's UPDATE.
    m = kind_get(rule.kind).evaluate(rule, rule_scope(rule), NOW)[0]
    later = NOW + dt.timedelta(seconds=30)
    refire = _Refire(rule, m, incident.pk, report, 0)
    incident_resolve(user=operator, incident=incident)
    _refires_apply([refire], later)
    incident.refresh_from_db()
    # The person's resolve sticks: the breach the batch saw is the one the incident was about.
    assert report.decisions[0].action == "held" and incident.status == "RESOLVED"
    assert incident.occurrences == 1


@override_settings(DETECTION_BATCH_SIZE=2)
def test_the_tick_evaluates_every_due_rule_in_batches(active_loader, rule_factory):
    add_signals(active_loader, failed=5, ok=5, at=dt.datetime.now(dt.UTC))
    due = DetectionRule.objects.filter(enabled=True).count()
    assert due > 2
    assert detection_tick() == due
    assert not DetectionRule.objects.filter(enabled=True, last_evaluated_at__isnull=True).exists()
    assert Incident.objects.filter(rule__name="Signal failure rate above 5%", loader=active_loader).exists()


@pytest.mark.django_db(transaction=True)
def test_a_claimed_batch_skips_only_the_rule_another_worker_holds(require_postgres, two_loaders, rule_factory):
    _only_our_rules()
    held, free = rule_factory("run_failed"), rule_factory("signal_failure_rate", threshold=5.0)
    with rule_held_by_another_worker(held):
        reports = rules_evaluate_claimed(rule_ids=[held.pk, free.pk], now=NOW)
    assert [r.rule_id for r in reports] == [free.pk]


def test_a_cycle_over_many_open_incidents_costs_a_few_queries(
    active_loader, rule_factory, django_assert_max_num_queries
):
    from loaders.models import Loader, LoaderVersion, VersionState

    _only_our_rules()
    clones = Loader.objects.bulk_create(
        [Loader(loader_code=f"L-{i:02d}", name=f"L {i}", owner=active_loader.owner) for i in range(20)]
    )
    LoaderVersion.objects.bulk_create(
        [LoaderVersion(loader=loader, number=1, state=VersionState.ACTIVE) for loader in clones]
    )
    for loader in [active_loader, *clones]:
        add_signals(loader, failed=5, ok=5, key="lag", value=99.0)
    rules = [
        rule_factory("signal_failure_rate", threshold=5.0),
        rule_factory("signal_failure_rate", threshold=10.0, window_seconds=900),
        rule_factory("metric_threshold", threshold=10.0, params={"signal_key": "lag", "aggregation": "max"}),
    ]
    rules_evaluate(rules=rules, now=NOW)
    assert Incident.objects.filter(status="OPEN").count() == 3 * 21
    with django_assert_max_num_queries(8):
        reports = rules_evaluate(rules=rules, now=NOW + dt.timedelta(seconds=10))
    assert {d.action for r in reports for d in r.decisions} == {"ongoing"}
    assert set(Incident.objects.values_list("occurrences", flat=True)) == {1}  # breaches, not evaluations
