"""Refusal of insecure production settings, at the entry points that serve or process data."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


def settings_refuse_insecure() -> None:
    """Raise if DEBUG is off and a development default is still in place (see settings.INSECURE_SETTINGS).

    Called by the WSGI/ASGI applications and when a Celery worker or beat starts.
    """
    problems = getattr(settings, "INSECURE_SETTINGS", [])
    if problems:
        raise ImproperlyConfigured(" ".join(problems))


@register(Tags.security, deploy=True)
def insecure_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [Error(problem, id="etl_monitor.E001") for problem in getattr(settings, "INSECURE_SETTINGS", [])]


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
