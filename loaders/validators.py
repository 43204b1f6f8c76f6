"""Field validators shared by the model, the API, the admin and (later) the Excel import."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from croniter import croniter
from django.core.exceptions import ValidationError

LOADER_CODE_RE = re.compile(r"^[A-Z0-9](?:[A-Z0-9_-]{0,62}[A-Z0-9])?$")


# The import template's example row carries this code, so that a file sent with the example still
# in it changes no real loader: no loader may take it, on any path.
EXAMPLE_LOADER_CODE = "EXAMPLE-DELETE-ME"


def validate_loader_code(value: str) -> None:
    if value == EXAMPLE_LOADER_CODE:
        raise ValidationError(
            "%(value)s is the template's example row: delete that row, or give the loader its own code.",
            code="example_loader_code",
            params={"value": value},
        )
    if not LOADER_CODE_RE.match(value or ""):
        raise ValidationError(
            "Loader code must be 1-64 upper-case letters, digits, '-' or '_', "
            "starting and ending with a letter or digit (e.g. SALES-DAILY); got %(value)r.",
            code="invalid_loader_code",
            params={"value": value},
        )


@lru_cache(maxsize=8192)
def _cron_is_valid(value: str) -> bool:
    # Schedules repeat a lot (imports of thousands of loaders); croniter's parse is the costly part.
    return len(value.split()) == 5 and croniter.is_valid(value)


def validate_cron_expression(value: str) -> None:
    if not value:
        return
    if not _cron_is_valid(value):
        raise ValidationError(
            "%(value)r is not a valid five-field cron expression (minute hour day-of-month month day-of-week), "
            "e.g. '30 2 * * *'.",
            code="invalid_cron",
            params={"value": value},
        )


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone_name(value: str) -> None:
    if value not in _timezones():
        raise ValidationError(
            "%(value)r is not a known IANA time zone (e.g. UTC, Europe/Berlin, America/New_York).",
            code="invalid_timezone",
            params={"value": value},
        )
