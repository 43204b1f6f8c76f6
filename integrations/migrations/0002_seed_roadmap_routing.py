"""The roadmap's notification tiers (section 1.4) and the two channels they name.

The channels exist from the start but send nothing until configured: ``slack``
needs SLACK_BOT_TOKEN (or a token on the channel); ``email`` uses Django's EMAIL_*
settings. Rules and channels stay editable (admin, API, apply_config).
"""

from django.db import migrations

ROADMAP = {
    "CRITICAL": {
        "channels": ["email", "slack"],
        "recipients": ["oncall-team@company.com", "platform-leads@company.com"],
        "slack_channel": "#alerts-critical",
        "escalation_timeout": 300,
    },
    "HIGH": {
        "channels": ["email", "slack"],
        "recipients": ["platform-team@company.com"],
        "slack_channel": "#alerts-high",
        "escalation_timeout": 900,
    },
    "MEDIUM": {"channels": ["slack"], "recipients": [], "slack_channel": "#alerts-medium", "escalation_timeout": 3600},
    "LOW": {"channels": ["slack"], "recipients": [], "slack_channel": "#alerts-low", "escalation_timeout": None},
}


def seed(apps, schema_editor):
    Channel = apps.get_model("integrations", "Channel")
    NotificationRule = apps.get_model("integrations", "NotificationRule")
    Channel.objects.get_or_create(name="email", defaults={"kind": "EMAIL"})
    Channel.objects.get_or_create(name="slack", defaults={"kind": "SLACK"})
    for severity, spec in ROADMAP.items():
        NotificationRule.objects.get_or_create(severity=severity, team=None, tag=None, defaults=spec)


def unseed(apps, schema_editor):
    apps.get_model("integrations", "NotificationRule").objects.filter(team=None, tag=None).delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
