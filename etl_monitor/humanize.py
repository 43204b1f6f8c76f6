"""Values as people read them: local times with their zone, durations and cron schedules in
words, counts with the right grammar. Every admin page and message uses these, so "3 Dec 2026,
14:02 CET" reads the same everywhere and no page shows ``+00:00`` or ``1.104584``."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.utils import timezone


def local_time(value: dt.datetime | None, tz: str | None = None) -> str:
    """``value`` in the site's time zone (TIME_ZONE) or ``tz``, with the zone's abbreviation:
    "3 Dec 2026, 14:02 CET"; "—" for no time."""
    if value is None:
        return "—"
    zone = zoneinfo.ZoneInfo(tz) if tz else timezone.get_current_timezone()
    local = timezone.localtime(value, zone) if timezone.is_aware(value) else value
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname() or ''}".rstrip()


def duration_words(seconds: float | None) -> str:
    """A duration as people say it: "0.4 s", "12 s", "1 min 5 s", "2 h 3 min", "3 d 4 h"."""
    if seconds is None:
        return "—"
    if seconds <= 0:
        return "0 s"
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def cron_words(expression: str) -> str:
    """A cron expression in words ("At 02:30, Monday through Friday") — the expression itself
    when cron-descriptor cannot read it, and "on demand" for none."""
    from cron_descriptor import ExpressionDescriptor, Options
    from cron_descriptor.Exception import FormatException, MissingFieldException, WrongArgumentException

    if not expression:
        return "on demand"
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(expression, options).get_description()
    except (FormatException, MissingFieldException, WrongArgumentException, ValueError, IndexError, KeyError):
        return expression  # the library's own errors, and a few plain ones on odd input


def count_phrase(count: int, singular: str, plural: str | None = None) -> str:
    """ "1 loader was" / "2 loaders were": ``singular`` is the noun; the verb follows the count."""
    noun = singular if count == 1 else (plural or f"{singular}s")
    return f"{count} {noun} {'was' if count == 1 else 'were'}"
