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
    return silences_matching([incident], at)[0]


def silences_matching(incidents: list[Incident], at: dt.datetime) -> list[Silence | None]:
    """``silence_matching`` of each incident, for a batch at once: the candidate silences, the
    loaders' owners and (when a silence matches on a tag) their tags are read once."""
    candidates = Silence.objects.filter(Q(until__isnull=True) | Q(until__gte=at - dt.timedelta(days=1)))
    active = [silence for silence in candidates.filter(starts_at__lte=at) if silence_is_active(silence, at)]
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
