"""A due rule is evaluated once per due time, however many ticks enqueued it: two schedulers (or a
queue slower than the tick) put the same rule in two tasks, and the task that runs after the first
one committed finds the rule no longer due."""

from __future__ import annotations

import datetime as dt
import logging

from incidents.detection import rules_evaluate_claimed
from incidents.models import DetectionRule, Incident
from incidents.tasks import rules_evaluate_task
from tests.incidents.conftest import NOW, add_signals


def test_it_skips_a_rule_that_another_ticks_task_evaluated_meanwhile(active_loader, rule_factory):
    DetectionRule.objects.update(enabled=False)
    add_signals(active_loader, failed=5, ok=5)
    rule = rule_factory("signal_failure_rate", threshold=5.0, interval_seconds=60)

    first = rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW, only_due=True)
    second = rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW + dt.timedelta(seconds=1), only_due=True)

    assert [r.rule_id for r in first] == [rule.pk]
    assert second == []  # the same due time: claimed once
    rule.refresh_from_db()
    assert rule.last_evaluated_at == NOW and rule.next_due_at == NOW + dt.timedelta(seconds=60)
    assert Incident.objects.get(rule=rule).occurrences == 1


def test_it_evaluates_the_rule_again_at_its_next_due_time(active_loader, rule_factory):
    DetectionRule.objects.update(enabled=False)
    rule = rule_factory("signal_failure_rate", threshold=5.0, interval_seconds=60)
    rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW, only_due=True)

    again = rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW + dt.timedelta(seconds=60), only_due=True)

    assert [r.rule_id for r in again] == [rule.pk]


def test_an_explicit_evaluation_does_not_wait_for_the_due_time(active_loader, rule_factory):
    DetectionRule.objects.update(enabled=False)
    rule = rule_factory("signal_failure_rate", threshold=5.0, interval_seconds=60)
    rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW, only_due=True)

    assert len(rules_evaluate_claimed(rule_ids=[rule.pk], now=NOW + dt.timedelta(seconds=1))) == 1


def test_the_ticks_task_logs_each_claim_with_its_due_time(active_loader, rule_factory, caplog):
    DetectionRule.objects.update(enabled=False)
    rule = rule_factory("signal_failure_rate", threshold=5.0, interval_seconds=60)

    with caplog.at_level(logging.INFO, logger="incidents.detection"):
        rules_evaluate_task([rule.pk])
        rules_evaluate_task([rule.pk])  # enqueued twice: the second finds it evaluated

    claims = [r.getMessage() for r in caplog.records if r.getMessage().startswith("detection: claimed")]
    assert len(claims) == 1 and claims[0].endswith(f" rule@due {rule.pk}@first")
