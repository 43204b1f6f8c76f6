"""Seeded anomaly rules: rows written and run duration of every loader, against its own history.

Each series is learned as it comes (a loader with less than ``min_history_days`` of runs stays in
its *learning* state and cannot fire), at the sensitivity whose false alarms on the healthy series
of the evaluation corpus stay at or below one per loader-month (docs/anomaly-detection.md).
Evaluated every 15 minutes: a run-level series changes at most once per run.
"""

from django.db import migrations

RULES = [
    {
        "name": "Unusual rows written",
        "rule_type": "TRANSACTION", "kind": "anomaly", "operator": "GT", "threshold": None,
        "params": {"source": "rows_written", "direction": "both", "sensitivity": "medium", "missing_after": 0.0},
        "window_seconds": 3600, "severity": "MEDIUM", "interval_seconds": 900, "enabled": True,
        "resolve_after_seconds": 0,
        "message": "{subject}: {series} {headline}",
        "suggestion": "Compare with the source: a partial extract, a filter or join that changed, or a duplicate "
        "load. If the new level is the new normal, approve a loader version with the new expected rows.",
    },
    {
        "name": "Unusual run duration",
        "rule_type": "TRANSACTION", "kind": "anomaly", "operator": "GT", "threshold": None,
        "params": {"source": "run_duration", "direction": "up", "sensitivity": "medium", "missing_after": 0.0},
        "window_seconds": 3600, "severity": "LOW", "interval_seconds": 900, "enabled": True,
        "resolve_after_seconds": 0,
        "message": "{subject}: {series} {headline}",
        "suggestion": "Look for locks, a slower source or more data than usual; downstream loads may wait.",
    },
]


def create(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    for rule in RULES:
        DetectionRule.objects.get_or_create(name=rule["name"], defaults=rule)


def remove(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    DetectionRule.objects.filter(name__in=[rule["name"] for rule in RULES], kind="anomaly").delete()


class Migration(migrations.Migration):
    dependencies = [("incidents", "0008_anomalystate")]

    operations = [migrations.RunPython(create, remove)]
