"""Silences: when one is active, which one matches an incident, and their writes.

A silence is a time range, optionally recurring (an RFC 5545 RRULE in its own time zone, so a
weekly window follows daylight-saving changes), with matchers (loader, tag, owner team, rule,
severity). Detection asks ``silence_matching`` as an incident opens or reopens and marks it
suppressed; the admin and the API write silences through ``silence_save``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dateutil.rrule import rrulestr
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from etl_monitor.errors import InvalidInput, model_validate
from etl_monitor.permissions import permission_require
from incidents.models import Incident, Silence

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
    import zoneinfo

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


def silence_matching(incident: Incident, at: dt.datetime) -> Silence | None:
    """The first silence active at ``at`` whose matchers (loader, tag, owner, rule, severity) all fit
    the incident, or None."""
    loader = incident.loader
    candidates = Silence.objects.filter(Q(until__isnull=True) | Q(until__gte=at - dt.timedelta(days=1)))
    candidates = candidates.filter(Q(loader__isnull=True) | Q(loader=loader))
    candidates = candidates.filter(Q(rule__isnull=True) | Q(rule_id=incident.rule_id))
    candidates = candidates.filter(Q(severity="") | Q(severity=incident.severity))
    tag_ids: set[int] | None = None  # read only when a silence matches on a tag
    for silence in candidates.filter(starts_at__lte=at):
        if silence.tag_id is not None:
            if tag_ids is None:
                tag_ids = set(loader.tags.values_list("pk", flat=True)) if loader else set()
            if silence.tag_id not in tag_ids:
                continue
        if silence.owner_id is not None and (loader is None or loader.owner_id != silence.owner_id):
            continue
        if silence_is_active(silence, at):
            return silence
    return None


@transaction.atomic
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
