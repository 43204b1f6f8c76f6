"""The roadmap's detection rules and the ETL rules, with sensible defaults.

Rules over external sources (Elasticsearch, Prometheus) start disabled: their
kinds and sources arrive with the monitoring feature and are enabled there.
"""

from django.db import migrations

RULES = [
    {
        "name": "Signal failure rate above 5%",
        "rule_type": "TRANSACTION", "kind": "signal_failure_rate", "operator": "GT", "threshold": 5.0,
        "window_seconds": 300, "severity": "HIGH", "interval_seconds": 60, "enabled": True,
        "message": "{subject}: {value}% of signals failed in the last 5 minutes (threshold {threshold}%)",
        "suggestion": "Open the loader's recent FAILED signals and the job's logs; check the source system.",
    },
    {
        "name": "Error log spike",
        "rule_type": "LOG", "kind": "es_error_count", "operator": "GT", "threshold": 50.0,
        "window_seconds": 300, "severity": "MEDIUM", "interval_seconds": 60, "enabled": False,
        "message": "{subject}: {value} ERROR log lines in 5 minutes (threshold {threshold})",
        "suggestion": "Look at the top error messages in Kibana.",
    },
    {
        "name": "Circuit breaker open",
        "rule_type": "INTEGRATION", "kind": "promql_threshold", "operator": "EQ", "threshold": 1.0,
        "params": {"query": 'resilience4j_circuitbreaker_state{state="open"}'},
        "window_seconds": 60, "severity": "CRITICAL", "interval_seconds": 30, "enabled": False,
        "message": "Circuit breaker open: {subject}",
        "suggestion": "The downstream service is failing; check its health before retrying loads.",
    },
    {
        "name": "Container memory above 85%",
        "rule_type": "INFRASTRUCTURE", "kind": "promql_threshold", "operator": "GT", "threshold": 85.0,
        "params": {"query": "container_memory_usage_bytes / container_spec_memory_limit_bytes * 100"},
        "window_seconds": 300, "severity": "HIGH", "interval_seconds": 60, "enabled": False,
        "message": "{subject}: memory at {value}% of its limit",
        "suggestion": "Raise the limit or find the leak before the pod is killed.",
    },
    {
        "name": "Run failed",
        "rule_type": "TRANSACTION", "kind": "run_failed", "operator": "GT", "threshold": 0.0,
        "window_seconds": 900, "severity": "HIGH", "interval_seconds": 60, "enabled": True,
        "message": "{subject}: {value} failed run(s) or FAILED signal(s) in the last 15 minutes",
        "suggestion": "Read the run's error text; rerun the loader once the cause is fixed.",
    },
    {
        "name": "Missed run",
        "rule_type": "TRANSACTION", "kind": "missed_run", "operator": "GT", "threshold": 0.0,
        "window_seconds": 3600, "severity": "HIGH", "interval_seconds": 60, "enabled": True,
        "message": "{subject}: the run due at {expected_at} did not start ({value} minutes late)",
        "suggestion": "Check the scheduler (cron, Airflow…) and whether the job is stuck before it reports.",
    },
    {
        "name": "Run too long",
        "rule_type": "TRANSACTION", "kind": "run_duration", "operator": "GT", "threshold": None,
        "params": {"mode": "max"}, "window_seconds": 3600, "severity": "MEDIUM", "interval_seconds": 60,
        "enabled": True,
        "message": "{subject}: a run has taken {value} s (limit {limit_seconds} s)",
        "suggestion": "Look for locks or a slow source; downstream loads may wait on this one.",
    },
    {
        "name": "Volume out of range",
        "rule_type": "TRANSACTION", "kind": "volume_out_of_range", "operator": "GT", "threshold": None,
        "window_seconds": 86400, "severity": "MEDIUM", "interval_seconds": 300, "enabled": True,
        "message": "{subject}: {value} rows written, expected {expected_min}–{expected_max}",
        "suggestion": "Compare with the source's row count; a partial extract often looks like this.",
    },
]


def create(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    for spec in RULES:
        DetectionRule.objects.get_or_create(name=spec["name"], defaults=spec)


def remove(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    DetectionRule.objects.filter(name__in=[r["name"] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(create, remove)]
