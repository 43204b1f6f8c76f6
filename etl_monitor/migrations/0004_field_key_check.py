"""The field key check: a known text encrypted with the key in use when the database is set up.

Start-up decrypts it (etl_monitor.checks) and refuses to run with keys that cannot. Without a usable
key here (DEBUG off and FIELD_ENCRYPTION_KEY unset) no row is written: the first start writes it.
"""

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models

import etl_monitor.crypto

# The same text as etl_monitor.crypto.KEY_CHECK_PLAINTEXT (a migration keeps its own copy).
KEY_CHECK_PLAINTEXT = "etl-monitor field key check"


def write(apps, schema_editor):
    FieldKeyCheck = apps.get_model("etl_monitor", "FieldKeyCheck")
    try:
        etl_monitor.crypto.fernet()  # asked first: a failure inside the insert would spoil the migration's transaction
    except ImproperlyConfigured:
        return  # no usable key now; start-up refuses or writes the row
    rows = FieldKeyCheck.objects.using(schema_editor.connection.alias)
    if not rows.exists():
        rows.create(token=KEY_CHECK_PLAINTEXT)


class Migration(migrations.Migration):
    dependencies = [
        ("etl_monitor", "0003_builtin_secret_protection"),
    ]

    operations = [
        migrations.CreateModel(
            name="FieldKeyCheck",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "token",
                    etl_monitor.crypto.EncryptedTextField(
                        help_text="A known text, encrypted; it proves the configured keys read this database."
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "verbose_name": "field key check",
            },
        ),
        migrations.RunPython(write, migrations.RunPython.noop),
    ]
