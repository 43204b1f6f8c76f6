"""detection_rules in apply_config: validated per kind, idempotent, errors with key path and line."""

from __future__ import annotations

from incidents.models import DetectionRule
from tests.config_files import config_apply, config_refused

RULES = """\
detection_rules:
  - name: Sales lag above 10 minutes
    kind: metric_threshold
    params: {signal_key: lag_seconds, aggregation: max}
    operator: GT
    threshold: 600
    severity: HIGH
    scope: LOADERS
    scope_loaders: [SALES-DAILY]
"""


def apply(tmp_path, text: str) -> str:
    return config_apply(tmp_path, text, "--as", "ada-admin")


def test_rules_are_created_and_reapplying_changes_nothing(tmp_path, admin_user, active_loader):
    assert "detection_rules Sales lag above 10 minutes: created" in apply(tmp_path, RULES)
    rule = DetectionRule.objects.get(name="Sales lag above 10 minutes")
    assert rule.params == {"signal_key": "lag_seconds", "aggregation": "max", "per": "loader"} and rule.threshold == 600
    history = rule.history.count()
    assert "unchanged" in apply(tmp_path, RULES)
    assert rule.history.count() == history
    assert "changed (threshold)" in apply(tmp_path, RULES.replace("threshold: 600", "threshold: 900"))


def test_bad_rules_name_the_key_path_and_line(tmp_path, admin_user, active_loader):
    bad = RULES.replace("aggregation: max", "aggregation: median").replace("SALES-DAILY]", "NOPE]")
    text = config_refused(tmp_path, bad, "--as", "ada-admin")
    assert "detection_rules[0].params.aggregation: Must be one of" in text
    assert "detection_rules[0].scope_loaders: Unknown loader(s): NOPE." in text
    assert "line 4" in text


def test_only_admins_may_apply_rules(tmp_path, editor, active_loader):
    err = config_refused(tmp_path, RULES, "--as", editor.username)
    assert "does not allow you to manage detection rules" in err
