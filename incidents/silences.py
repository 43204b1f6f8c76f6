"""Silences: when one is active, which one matches an incident, and their writes.

A silence is a time range, optionally recurring (an RFC 5545 RRULE in its own time zone, so a
weekly window follows daylight-saving changes), with matchers (loader, tag, owner team, rule,
severity). Detection asks ``silence_matching`` as an incident opens or reopens and marks it
suppressed; the admin and the API write silences through ``silence_save``.

Two ways in that people use most build on it: ``silence_for_incident`` (the on-call page's
"Silence 1 h / 4 h / until…" for this loader or this rule, written on the incident's timeline) and
``silence_recurring_save`` (weekdays, start time, duration and time zone, stored as an RRULE).
Every path ends in ``silence_save``, so its validation and permission hold for all of them.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from dateutil.rrule import rrulestr
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from etl_monitor.errors import InvalidInput, model_validate
from etl_monitor.permissions import permission_require
from incidents.events import event_record
from incidents.models import EventKind, Incident, Silence
from incidents.wording import duration_words
from loaders.models import Loader

SILENCE_FIELDS = (
    "loader",
    "tag",
    "owner",
    "rule",
    "severity",
    "starts_at",
    "ends_at",
    "recurrence",
    "timezone",
    "until",
    "comment",
)


def silence_is_active(silence: Silence, at: dt.datetime) -> bool:
    """Whether ``at`` falls in one of the silence's windows (recurrences in its time zone, DST-aware)."""
    if not silence.recurrence:
        return silence.starts_at <= at < silence.ends_at
    zone = zoneinfo.ZoneInfo(silence.timezone or "UTC")
    start_local = silence.starts_at.astimezone(zone).replace(tzinfo=None)
    length = silence.ends_at - silence.starts_at
    rule = rrulestr(silence.recurrence, dtstart=start_local)
    local_at = at.astimezone(zone).replace(tzinfo=None)
    # The latest occurrence starting at or before ``at`` (wall-clock time in the zone).
    occurrence = rule.before(local_at, inc=True)
    if occurrence is None:
        return False
    start = occurrence.replace(tzinfo=zone)
    if silence.until is not None and start > silence.until:
        return False
    return start <= at < start + length


def silences_active(at: dt.datetime) -> list[Silence]:
    """The silences with a window open at ``at`` (the candidates are read in one query)."""
    # One-off silences that ended are never read again (they pile up: one per "Silence 1 h" press).
    one_off_current = Q(recurrence="", ends_at__gt=at)
    recurring_current = ~Q(recurrence="") & (Q(until__isnull=True) | Q(until__gte=at - dt.timedelta(days=1)))
    candidates = Silence.objects.filter(one_off_current | recurring_current, starts_at__lte=at)
    return [silence for silence in candidates if silence_is_active(silence, at)]


def silence_matching(incident: Incident, at: dt.datetime) -> Silence | None:
    """The first silence active at ``at`` whose matchers (loader, tag, owner, rule, severity) all fit
    the incident, or None."""
    return silences_matching([incident], at)[0]


def silences_matching(incidents: list[Incident], at: dt.datetime) -> list[Silence | None]:
    """``silence_matching`` of each incident, for a batch at once: the candidate silences, the
    loaders' owners and (when a silence matches on a tag) their tags are read once."""
    active = silences_active(at)
    if not active:
        return [None] * len(incidents)
    loader_ids = {incident.loader_id for incident in incidents if incident.loader_id is not None}
    owners = dict(Loader.objects.filter(pk__in=loader_ids).values_list("pk", "owner_id"))
    tags: dict[int, set[int]] = {}
    if any(silence.tag_id is not None for silence in active):
        links = Loader.tags.through.objects.filter(loader_id__in=loader_ids).values_list("loader_id", "tag_id")
        for loader_id, tag_id in links:
            tags.setdefault(loader_id, set()).add(tag_id)

    def fits(silence: Silence, incident: Incident) -> bool:
        loader_id = incident.loader_id
        return (
            silence.loader_id in (None, loader_id)
            and silence.rule_id in (None, incident.rule_id)
            and silence.severity in ("", incident.severity)
            and (silence.tag_id is None or silence.tag_id in tags.get(loader_id, ()))
            and (silence.owner_id is None or (loader_id is not None and owners.get(loader_id) == silence.owner_id))
        )

    return [next((silence for silence in active if fits(silence, incident)), None) for incident in incidents]


@transaction.atomic
def silence_save(*, user: AbstractBaseUser, data: dict[str, Any], silence: Silence | None = None) -> Silence:
    """Create or change a silence: a time range, optionally recurring (RFC 5545 RRULE), and matchers."""
    from django.core.exceptions import ValidationError

    from loaders.validators import validate_timezone_name

    perm = "incidents.change_silence" if silence else "incidents.add_silence"
    permission_require(user, perm, "manage silences")
    silence = silence or Silence(created_by=user)
    allowed = set(SILENCE_FIELDS)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput({name: ["Unknown field."] for name in unknown})
    for name, value in data.items():
        setattr(silence, name, value)
    errors: dict[str, list[str]] = {}
    if silence.starts_at and silence.ends_at and silence.ends_at <= silence.starts_at:
        errors["ends_at"] = ["Must be after the start."]
    try:
        validate_timezone_name(silence.timezone or "UTC")
    except ValidationError as exc:
        errors["timezone"] = exc.messages
    if silence.recurrence:
        try:
            rrulestr(silence.recurrence, dtstart=silence.starts_at.replace(tzinfo=None))
        except (ValueError, TypeError, AttributeError) as exc:
            errors["recurrence"] = [f"Not a valid RRULE ({exc}), e.g. FREQ=WEEKLY;BYDAY=SU."]
    matchers = [silence.loader_id, silence.tag_id, silence.owner_id, silence.rule_id, silence.severity]
    if not any(matchers) and not (silence.comment or "").strip():
        errors["comment"] = ["A silence of everything needs a comment saying why."]
    model_validate(silence, errors)
    silence._history_user = user
    silence.save()
    return silence


# --- from an incident: "Silence 1 h / 4 h / until…" -----------------------------------------------

# A silence from an incident is a pause, not a policy: longer ones are maintenance windows,
# written as recurring silences where everyone sees them.
SILENCE_FROM_INCIDENT_MAX = dt.timedelta(days=14)


def silence_for_incident(
    *,
    user: AbstractBaseUser,
    incident: Incident,
    scope: str,
    hours: float | None = None,
    until: dt.datetime | None = None,
    comment: str = "",
    now: dt.datetime | None = None,
) -> Silence:
    """Silence this incident's loader (or its rule) from now for ``hours``, or until ``until``.

    The silence starts now and matches on the loader or the rule alone, so later incidents of it
    (and reopenings of this one) are recorded but notify nobody. The incident's timeline says who
    silenced what until when. Errors name the field (``scope``, ``hours``, ``until``) and write
    nothing. The incident itself keeps its state: acknowledging is what stops its escalation."""
    permission_require(user, "incidents.add_silence", "manage silences")
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    target: Any = None
    if scope == "loader":
        target = incident.loader
        if target is None:
            errors["scope"] = ["This incident has no loader; silence its rule instead."]
    elif scope == "rule":
        target = incident.rule
        if target is None:
            errors["scope"] = ["This incident has no detection rule; silence its loader instead."]
    else:
        errors["scope"] = ["Choose loader or rule."]
    ends_at = None
    if (hours is None) == (until is None):
        errors["until"] = ["Give either a duration in hours or an end time."]
    elif hours is not None:
        if not 0 < hours <= SILENCE_FROM_INCIDENT_MAX.total_seconds() / 3600:
            errors["hours"] = [f"Between 0 and {SILENCE_FROM_INCIDENT_MAX.days * 24} hours."]
        else:
            ends_at = now + dt.timedelta(hours=hours)
    elif until is not None:
        if until.tzinfo is None:
            errors["until"] = ["Give the end time with its time zone."]
        elif until <= now:
            errors["until"] = ["Must be in the future."]
        elif until - now > SILENCE_FROM_INCIDENT_MAX:
            errors["until"] = [
                f"At most {SILENCE_FROM_INCIDENT_MAX.days} days ahead; use a recurring silence for maintenance windows."
            ]
        else:
            ends_at = until
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        silence = silence_save(
            user=user,
            data={
                scope: target,
                "starts_at": now,
                "ends_at": ends_at,
                "comment": (comment.strip() or f"Silenced from incident #{incident.pk}: {incident.title}")[:2000],
            },
        )
        what = f"this loader ({target.loader_code})" if scope == "loader" else f"this rule ({target.name})"
        local_end = timezone.localtime(ends_at)
        event_record(
            incident,
            EventKind.SILENCED,
            at=now,
            actor=user,
            message=(
                f"Silenced {what} for {duration_words((ends_at - now).total_seconds())}, "
                f"until {local_end:%Y-%m-%d %H:%M} {local_end.tzname()}."
                + (f" {comment.strip()}" if comment.strip() else "")
            ),
            data={"silence": silence.pk, "scope": scope, "ends_at": ends_at.isoformat()},
        )
    return silence


# --- recurring silences: weekdays, start time, duration, time zone → RRULE ------------------------

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_WINDOW_MINUTES = 7 * 24 * 60


def silence_recurring_save(
    *,
    user: AbstractBaseUser,
    weekdays: list[str],
    start_time: dt.time | None,
    duration_minutes: int | None,
    timezone_name: str,
    matchers: dict[str, Any],
    comment: str = "",
    starts_on: dt.date | None = None,
    until: dt.date | None = None,
    silence: Silence | None = None,
) -> Silence:
    """A weekly maintenance window: on ``weekdays`` (MO…SU) from ``start_time`` for
    ``duration_minutes``, wall-clock time in ``timezone_name`` (so it follows daylight saving).

    Stored as an RRULE (``FREQ=WEEKLY;BYDAY=…``) whose first window is the first of those weekdays
    on or after ``starts_on`` (default: today there); ``until`` is the last day a window may start.
    ``matchers`` are the ``silence_save`` matchers (loader, tag, owner, rule, severity). Errors name
    the field (``weekdays``, ``start_time``, ``duration_minutes``, ``timezone``, ``until``) and write
    nothing."""
    from django.core.exceptions import ValidationError

    from loaders.validators import validate_timezone_name

    perm = "incidents.change_silence" if silence else "incidents.add_silence"
    permission_require(user, perm, "manage silences")
    errors: dict[str, list[str]] = {}
    days = [str(day).strip().upper() for day in weekdays or []]
    unknown = [day for day in days if day not in WEEKDAYS]
    if unknown:
        errors["weekdays"] = [f"Unknown weekday {', '.join(map(repr, unknown))}; use {', '.join(WEEKDAYS)}."]
    elif not days:
        errors["weekdays"] = ["Choose at least one weekday."]
    if start_time is None:
        errors["start_time"] = ["Give the time the window starts (HH:MM)."]
    if duration_minutes is None or not 1 <= duration_minutes <= MAX_WINDOW_MINUTES:
        errors["duration_minutes"] = [f"Between 1 and {MAX_WINDOW_MINUTES} minutes (a week)."]
    zone = None
    try:
        validate_timezone_name(timezone_name)
        zone = zoneinfo.ZoneInfo(timezone_name)
    except ValidationError as exc:
        errors["timezone"] = exc.messages
    first_day = starts_on or (timezone.now().astimezone(zone).date() if zone else None)
    if until is not None and first_day is not None and until < first_day:
        errors["until"] = ["Must be on or after the first day."]
    if errors:
        raise InvalidInput(errors)
    assert zone is not None and start_time is not None and duration_minutes is not None and first_day is not None
    wanted = {WEEKDAYS.index(day) for day in days}
    day = next(
        first_day + dt.timedelta(days=n) for n in range(7) if (first_day + dt.timedelta(days=n)).weekday() in wanted
    )
    starts_at = dt.datetime.combine(day, start_time.replace(second=0, microsecond=0), tzinfo=zone)
    ordered = [d for d in WEEKDAYS if d in days]
    data = {
        **matchers,
        "starts_at": starts_at,
        "ends_at": starts_at + dt.timedelta(minutes=duration_minutes),
        "recurrence": f"FREQ=WEEKLY;BYDAY={','.join(ordered)}",
        "timezone": timezone_name,
        "until": dt.datetime.combine(until, dt.time(23, 59, 59), tzinfo=zone) if until else None,
        "comment": comment,
    }
    return silence_save(user=user, data=data, silence=silence)


def silence_describe(silence: Silence) -> str:
    """When a silence is on, in words: "Every Mon, Wed 22:00–23:30 (Europe/Berlin), until 31 Jan 2027"
    or, for a one-off, "Thu 03 Dec 18:05 → 19:05 (UTC)". An RRULE the words do not cover is shown
    as it is stored."""
    zone = _zone(silence.timezone)
    start = silence.starts_at.astimezone(zone)
    end = silence.ends_at.astimezone(zone)
    if not silence.recurrence:
        same_day = start.date() == end.date()
        return (
            f"{start:%a %d %b %Y %H:%M} → {end:%H:%M}"
            if same_day
            else f"{start:%a %d %b %H:%M} → {end:%a %d %b %Y %H:%M}"
        )
    parts = dict(part.split("=", 1) for part in silence.recurrence.upper().split(";") if "=" in part)
    only = set(parts) <= {"FREQ", "BYDAY", "INTERVAL"} and parts.get("INTERVAL", "1") == "1"
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    if only and parts.get("FREQ") == "DAILY" and not days:
        when = "Every day"
    elif only and parts.get("FREQ") == "WEEKLY" and all(d in WEEKDAYS for d in days):
        days = days or [WEEKDAYS[start.weekday()]]
        if len(days) == 7:
            when = "Every day"
        elif set(days) == set(WEEKDAYS[:5]):
            when = "Every weekday"
        else:
            when = "Every " + ", ".join(WEEKDAY_NAMES[WEEKDAYS.index(d)] for d in WEEKDAYS if d in days)
    else:
        length = duration_words((silence.ends_at - silence.starts_at).total_seconds())
        return f"Repeats: {silence.recurrence} from {start:%d %b %Y %H:%M} for {length} ({silence.timezone})"
    length = silence.ends_at - silence.starts_at
    ending = (start + length).strftime("%H:%M")
    text = f"{when} {start:%H:%M}–{ending} ({silence.timezone})"
    if length >= dt.timedelta(days=1):
        text = f"{when} from {start:%H:%M} for {duration_words(length.total_seconds())} ({silence.timezone})"
    if silence.until is not None:
        text += f", until {silence.until.astimezone(zone):%d %b %Y}"
    return text


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC
