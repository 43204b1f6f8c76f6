"""Built-in protection rows for the secrets that exist today (visible to admins, not weakenable)."""

from django.db import migrations

BUILTIN = [
    ("loaders.loaderversion", "connection_password", "Connection secret: encrypted at rest, never shown, only replaceable."),
]


def create(apps, schema_editor):
    FieldProtection = apps.get_model("etl_monitor", "FieldProtection")
    for label, name, note in BUILTIN:
        FieldProtection.objects.update_or_create(
            model_label=label, field_name=name, defaults={"level": "MASKED", "note": note, "is_builtin": True}
        )


def remove(apps, schema_editor):
    FieldProtection = apps.get_model("etl_monitor", "FieldProtection")
    for label, name, _note in BUILTIN:
        FieldProtection.objects.filter(model_label=label, field_name=name, is_builtin=True).delete()


class Migration(migrations.Migration):
    dependencies = [("etl_monitor", "0002_field_protection")]

    operations = [migrations.RunPython(create, remove)]
