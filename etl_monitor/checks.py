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
