"""The rules of the ingest API's fields, written once, with the words the sender reads.

The signal fast path (``services.signals_ingest``) applies these to every item of a batch of
thousands, and the run contract (``api/serializers.py``) wraps them as serializer fields, so a
run and a signal refuse the same input in the same words. Absent and ``null`` are the same to
every rule.

A rule returns the value to store. A refusal goes to ``refusals.add(index, field, message)``
and the rule returns a placeholder: the fast path collects every refusal of a batch (item by
item, field by field) and answers them all; the run contract's sink raises the field's error
at once. A sink rather than an exception keeps the fast path at one plain call per field: a
wrapper catching an exception around each call made validating a signal a third costlier.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from django.conf import settings

MAX_COUNT = 2**63 - 1  # a PostgreSQL bigint
ERROR_TEXT_MAX = 4_000
LOG_EXCERPT_MAX = 10_000


class Refusals(Protocol):
    def add(self, index: int | None, field: str, message: str) -> None: ...


def text(value: Any, field: str, max_length: int, refusals: Refusals, index: int | None, required: bool = False) -> str:
    """A string as sent (not trimmed, never converted from a number); ``""`` when absent."""
    if value is None or value == "":
        if required:
            refusals.add(index, field, "Required.")
        return ""
    if not isinstance(value, str):
        refusals.add(index, field, "Must be a string.")
        return ""
    if "\x00" in value:
        refusals.add(index, field, "Must not contain NUL characters.")
        return ""
    if len(value) > max_length:
        refusals.add(index, field, f"At most {max_length} characters.")
        return ""
    return value


def free_text(value: Any, limit: int) -> str:
    """Free text from jobs (an error, a log excerpt): never refused, kept as text minus what
    PostgreSQL cannot store (NUL becomes U+FFFD), cut to ``limit`` characters with a mark."""
    value = "" if value is None else str(value).replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - 20] + "\n…(truncated)"


def timestamp(value: Any, field: str, refusals: Refusals, index: int | None, now: dt.datetime) -> dt.datetime | None:
    """An ISO 8601 moment with a time zone, not later than ``now`` plus the clock tolerance."""
    if value is None:
        return None
    if not isinstance(value, str):
        refusals.add(index, field, "Must be an ISO 8601 timestamp string, e.g. 2026-11-28T02:30:00Z.")
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        refusals.add(index, field, f"{value!r} is not an ISO 8601 timestamp, e.g. 2026-11-28T02:30:00Z.")
        return None
    if parsed.tzinfo is None:
        refusals.add(index, field, "Must include a time zone (e.g. Z or +01:00).")
        return None
    tolerance = dt.timedelta(seconds=settings.SIGNAL_FUTURE_TOLERANCE_SECONDS)
    if parsed > now + tolerance:
        refusals.add(
            index, field, f"Is more than {int(tolerance.total_seconds())} s in the future; check the sender's clock."
        )
        return None
    return parsed


def choice(
    value: Any, field: str, values: Sequence[str], default: str | None, refusals: Refusals, index: int | None
) -> str:
    """One of ``values`` exactly (a list or an object is refused like any other wrong value);
    ``default`` when absent, if the field has one."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or value not in values:
        refusals.add(index, field, f"Must be one of {', '.join(values)}.")
        return default or ""
    return value


def whole_number(value: Any, field: str, maximum: int, refusals: Refusals, index: int | None) -> int | None:
    """An integer from 0 to ``maximum`` (not a boolean, not 1.0, not "1")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        refusals.add(index, field, f"Must be a whole number from 0 to {maximum}.")
        return None
    return value


def uuid_value(value: Any, field: str, refusals: Refusals, index: int | None) -> uuid.UUID | None:
    """A UUID in any of its text forms (any case, with or without dashes or braces)."""
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        refusals.add(index, field, "Must be a UUID.")
        return None
