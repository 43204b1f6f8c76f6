"""Refusal of insecure production settings, at the entry points that serve or process data.

The web server (WSGI/ASGI), the Celery worker and beat call ``platform_refuse_to_start`` before they
do anything else; ``manage.py check`` reports the same problems (insecure defaults with ``--deploy``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from etl_monitor.crypto import KEY_CHECK_PLAINTEXT, field_keys_malformed

logger = logging.getLogger(__name__)

FIELD_KEY_WRONG = (
    "FIELD_ENCRYPTION_KEY does not decrypt this database's secrets: its key check, written with the key in use "
    "when the database was set up, decrypts with none of the configured keys. Configure the key this database "
    "was encrypted with. To rotate, put the new key first and keep the old key(s) listed after it until "
    "`manage.py rotate_field_keys` has run; only then remove them."
)


def settings_refuse_insecure() -> None:
    """Raise if DEBUG is off and a development default is still in place (see settings.INSECURE_SETTINGS),
    or if a configured FIELD_ENCRYPTION_KEY is not a Fernet key (in DEBUG too: it was set on purpose)."""
    problems = [*getattr(settings, "INSECURE_SETTINGS", []), *field_keys_malformed()]
    if problems:
        raise ImproperlyConfigured(" ".join(problems))


def field_key_verify() -> None:
    """Raise if the configured keys do not decrypt the database's key check; write it if it is missing.

    The key check is written by a migration with the key in use then; a database migrated without a
    usable key (production settings incomplete) gets it from the first process that starts. A database
    that cannot be asked (not migrated yet, unreachable) is not judged here: readiness reports it."""
    from etl_monitor.models import FieldKeyCheck

    try:
        rows = list(FieldKeyCheck.objects.all())
        if not rows:
            FieldKeyCheck.objects.create(token=KEY_CHECK_PLAINTEXT)
            logger.info("Field key check written with the first FIELD_ENCRYPTION_KEY.")
            return
    except DatabaseError as exc:
        logger.warning("Field key check skipped, the database cannot be read: %s", exc)
        return
    if any(row.token != KEY_CHECK_PLAINTEXT for row in rows):
        raise ImproperlyConfigured(FIELD_KEY_WRONG)


def platform_refuse_to_start() -> None:
    """Raise ImproperlyConfigured (the message says what to fix) if this process must not serve or process
    data: insecure production settings, a malformed field key, or keys that cannot read this database.

    Called by the WSGI/ASGI applications and when a Celery worker or beat starts."""
    settings_refuse_insecure()
    try:
        field_key_verify()
    finally:
        # The servers fork after this (gunicorn workers, the Celery pool): no child may share this connection.
        connections.close_all()


@register(Tags.security, deploy=True)
def insecure_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [Error(problem, id="etl_monitor.E001") for problem in getattr(settings, "INSECURE_SETTINGS", [])]


@register(Tags.security)
def field_key_format_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A FIELD_ENCRYPTION_KEY that is not a Fernet key fails every secret: refuse it before anything runs."""
    return [Error(problem, id="etl_monitor.E003") for problem in field_keys_malformed()]


@register(Tags.database)
def field_key_database_check(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    """``check --database default`` (and ``migrate``) refuse keys that do not decrypt the key check.
    Only reads: the row is written by the migration or the first start."""
    if not databases or "default" not in databases or field_keys_malformed():
        return []
    from etl_monitor.models import FieldKeyCheck

    try:
        tokens = list(FieldKeyCheck.objects.values_list("token", flat=True))
    except (DatabaseError, ImproperlyConfigured):
        return []  # not migrated yet, or no key at all (reported by the deploy check)
    if any(token != KEY_CHECK_PLAINTEXT for token in tokens):
        return [Error(FIELD_KEY_WRONG, id="etl_monitor.E004")]
    return []


@register()
def severity_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Settings that name a severity must name one that exists (a typo would silently fall back)."""
    from loaders.models import Severity

    known = ", ".join(Severity.values)
    errors = []
    for name in ("ALERTMANAGER_DEFAULT_SEVERITY", "SOURCE_UNREACHABLE_SEVERITY"):
        value = str(getattr(settings, name, "")).strip().upper()
        if value not in Severity.values:
            errors.append(Error(f"{name}={value!r} is not a severity (one of {known}).", id="etl_monitor.E002"))
    for label, value in getattr(settings, "ALERTMANAGER_SEVERITY_MAP", {}).items():
        if str(value).strip().upper() not in Severity.values:
            errors.append(
                Error(
                    f"ALERTMANAGER_SEVERITY_MAP maps {label!r} to {value!r}, which is not a severity (one of {known}).",
                    id="etl_monitor.E002",
                )
            )
    return errors
