"""The ``jira`` channel (the outbox's transport for tickets) and the default Jira settings.

Nothing is sent until JIRA_ENABLED and the JIRA_* connection settings are set."""

from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("integrations", "Channel").objects.get_or_create(name="jira", defaults={"kind": "JIRA"})
    apps.get_model("integrations", "JiraSettings").objects.get_or_create(pk=1)


def unseed(apps, schema_editor):
    apps.get_model("integrations", "Channel").objects.filter(name="jira", kind="JIRA").delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0003_jira")]

    operations = [migrations.RunPython(seed, unseed)]
