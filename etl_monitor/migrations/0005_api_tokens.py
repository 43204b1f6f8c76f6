"""People's API tokens, hashed (issue 13): the ApiToken table, and DRF's plain-text tokens moved into it.

Until now rest_framework.authtoken kept every token's key in clear (authtoken_token). Each key
is hashed into ApiToken (so scripts keep working), expiring API_TOKEN_TTL_DAYS after this
migration; then the plain-text table is dropped and the app's migration records removed
(rest_framework.authtoken is no longer installed), so no plain key stays in the database.
"""

import datetime as dt
import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

PLAIN_TABLE = "authtoken_token"


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return  # a database created after rest_framework.authtoken was removed
    ApiToken = apps.get_model("etl_monitor", "ApiToken")
    expires_at = timezone.now() + dt.timedelta(days=getattr(settings, "API_TOKEN_TTL_DAYS", 90))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {PLAIN_TABLE}")  # noqa: S608 - a constant name
        rows = cursor.fetchall()
    ApiToken.objects.using(connection.alias).bulk_create(
        [
            ApiToken(
                user_id=user_id,
                name="migrated plain-text token",
                prefix=key[:8],
                token_hash=hashlib.sha256(key.encode()).hexdigest(),
                expires_at=expires_at,
            )
            for key, user_id in rows
        ]
    )
    schema_editor.execute(f"DROP TABLE {PLAIN_TABLE}")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):

    dependencies = [
        ('etl_monitor', '0004_field_key_check'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, help_text="What uses it, e.g. 'nightly report script'.", max_length=100)),
                ('prefix', models.CharField(help_text='The first characters, to recognise the token.', max_length=16)),
                ('token_hash', models.CharField(editable=False, max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ['-created_at'],
            },
        ),
        migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop),
    ]
