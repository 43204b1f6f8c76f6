"""The freshness rule (the contract's freshness SLA, enforced), and seeded messages people can read.

"Missed run" named its slot as an ISO timestamp, "Run failed" did not say when the latest failure
was, "Run too long" gave seconds with decimals; they now use the kinds' human times (in the
loader's time zone) and durations. A message someone changed is
left as they wrote it.
"""

from django.db import migrations

FRESHNESS = {
    "name": "Data not fresh",
    "rule_type": "TRANSACTION", "kind": "freshness", "operator": "GT", "threshold": None,
    "window_seconds": 7 * 86400, "severity": "MEDIUM", "interval_seconds": 60, "enabled": True,
    "message": "{subject}: no fresh data for {age} (freshness SLA {sla_minutes} min; last data: {last_data_at})",
    "suggestion": "Check whether the job ran and loaded anything; a run that succeeds with fresh data resolves it.",
}

# name → (the message 0002 seeded, the readable one)
MESSAGES = {
    "Missed run": (
        "{subject}: the run due at {expected_at} did not start ({value} minutes late)",
        "{subject}: the run due {expected_at_local} did not start ({value} minutes late)",
    ),
    "Run too long": (
        "{subject}: a run has taken {value} s (limit {limit_seconds} s)",
        "{subject}: a run has taken {duration} (limit {limit})",
    ),
    "Run failed": (
        "{subject}: {value} failed run(s) or FAILED signal(s) in the last 15 minutes",
        "{subject}: {value} failed run(s) or FAILED signal(s) in the last 15 minutes, the latest at {latest_at}",
    ),
}


def create(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    DetectionRule.objects.get_or_create(name=FRESHNESS["name"], defaults=FRESHNESS)
    for name, (seeded, readable) in MESSAGES.items():
        DetectionRule.objects.filter(name=name, message=seeded).update(message=readable)


def remove(apps, schema_editor):
    DetectionRule = apps.get_model("incidents", "DetectionRule")
    DetectionRule.objects.filter(name=FRESHNESS["name"]).delete()
    for name, (seeded, readable) in MESSAGES.items():
        DetectionRule.objects.filter(name=name, message=readable).update(message=seeded)


class Migration(migrations.Migration):
    dependencies = [("incidents", "0004_alter_incidentevent_kind")]

    operations = [migrations.RunPython(create, remove)]
