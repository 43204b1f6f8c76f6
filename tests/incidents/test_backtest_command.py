"""``manage.py rule_backtest``: the table, the JSON, and errors that name the argument."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from incidents.models import Incident
from tests.incidents.test_backtest import add_lag_signals


@pytest.fixture
def lag_rule(active_loader, rule_factory):
    add_lag_signals(active_loader, 1, end=timezone.now())
    return rule_factory(
        "metric_threshold",
        name="lag watch",
        params={"signal_key": "lag"},
        threshold=10,
        window_seconds=3600,
        interval_seconds=3600,
    )


def backtest(*args: str) -> str:
    out = StringIO()
    call_command("rule_backtest", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_it_prints_the_would_be_incidents_and_counts_per_subject(lag_rule):
    output = backtest("--rule", "lag watch", "--days", "2")
    assert "Evaluated every 1 h, as the rule is." in output
    assert "SALES-DAILY" in output and "Per subject" in output
    assert "evaluations in" in output and "49 evaluations" in output
    assert not Incident.objects.exists()


def test_it_finds_the_rule_by_id_and_answers_json(lag_rule):
    body = json.loads(backtest("--rule", str(lag_rule.pk), "--days", "2", "--json"))
    assert body["rule"] == "lag watch" and body["evaluations"] == 49
    assert body["per_subject"] == {"SALES-DAILY": len(body["incidents"])}


def test_a_quiet_rule_says_nothing_would_have_opened(rule_factory, active_loader):
    rule_factory("run_failed", name="failures", threshold=0, interval_seconds=3600)
    assert "No incident would have opened (0 subjects measured)." in backtest("--rule", "failures", "--days", "1")


def test_an_unknown_rule_names_rule(db):
    with pytest.raises(CommandError, match=r"--rule: no rule named or numbered 'nope'"):
        backtest("--rule", "nope")


@pytest.mark.parametrize("days", ["0", "91", "week"])
def test_bad_days_name_days(lag_rule, days):
    with pytest.raises(CommandError, match="--days: "):
        backtest("--rule", "lag watch", "--days", days)
