"""Who is on call when: a schedule's layers and overrides turned into one timeline of shifts.

The rules, enforced here and nowhere else:

- A rotation's shift ``k`` starts on ``start_date + k`` days (daily) or weeks (weekly) at
  ``handoff_time`` *local to the schedule's zone* and is taken by member ``k mod n``. So a daily
  hand-off at 09:00 Europe/Paris is at 08:00 UTC in winter and 07:00 UTC in summer, and the shift
  that spans a daylight-saving change lasts 23 h (spring) or 25 h (autumn).
- A restriction (``restrict_start``–``restrict_end``, local) keeps a layer to that part of each
  day; an end at or before the start crosses midnight.
- Where several layers have someone, the highest ``layer`` wins (two rotations on the same layer
  are both on call). An override wins over every layer; overlapping overrides are all on call.
- A person whose account is inactive is on call nowhere: their turn is a gap (a lower layer, or
  nobody, answers), so nobody is paged through an account that cannot acknowledge.
- Contiguous pieces of one person from the same rotation (or the same override) are one shift.

Everything here reads: ``shifts`` and ``oncall_at`` for one schedule, ``oncall_users`` for a
batch of schedules in four queries (routing asks it for hundreds of incidents at once).
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q

from oncall.models import Handoff, Override, Rotation, RotationMember, Schedule

User = get_user_model()

SOURCE_ROTATION = "rotation"
SOURCE_OVERRIDE = "override"


@dataclass(frozen=True)
class Shift:
    """One person on call from ``start`` to ``end`` (aware UTC), and what put them there:
    ``source`` "rotation" (``rotation`` names it, ``layer`` its layer) or "override"
    (``override_id``)."""

    user: Any
    start: dt.datetime
    end: dt.datetime
    source: str
    rotation: str = ""
    layer: int | None = None
    override_id: int | None = None

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class _Piece:
    """A stretch where one layer (or one override) has someone; ``rank`` orders who wins."""

    start: dt.datetime
    end: dt.datetime
    user: Any
    rank: tuple[int, int]  # (1, 0) for an override; (0, layer) for a rotation
    order: int  # among equals: the rotation's or the override's place, for a stable list
    source: str
    rotation: str = ""
    layer: int | None = None
    override_id: int | None = None


def zone_of(schedule: Schedule) -> dt.tzinfo:
    """The schedule's zone (UTC if its name is not a zone: the services refuse such names, so
    only a row written around them has one)."""
    try:
        return zoneinfo.ZoneInfo(schedule.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_moment(day: dt.date, time: dt.time, zone: dt.tzinfo) -> dt.datetime:
    """The UTC instant of wall-clock ``time`` on ``day`` in ``zone``.

    A time the clocks skip (02:30 on a spring-forward night in Europe/Paris) happens when they
    jump, 03:00 local: the hand-off is neither early nor an hour late. A time that happens twice
    (02:30 on a fall-back night) is its first occurrence (``fold=0``), so the shift before it is
    never longer than the clock change requires."""
    naive = dt.datetime.combine(day, time)
    moment = naive.replace(tzinfo=zone).astimezone(dt.UTC)
    if moment.astimezone(zone).replace(tzinfo=None) == naive:
        return moment
    # Skipped: the jump lies between reading the time with the offset after it and before it.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    high = naive.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    low, high = min(low, high), max(low, high)
    before = low.astimezone(zone).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _rotation_pieces(
    rotation: Rotation, members: Sequence[Any], zone: dt.tzinfo, start: dt.datetime, end: dt.datetime, order: int
) -> list[_Piece]:
    """The rotation's shifts overlapping ``[start, end)``, cut to its restriction if it has one."""
    if not members:
        return []
    period = 1 if rotation.handoff == Handoff.DAILY else 7
    handoff_time = _time(rotation.handoff_time)
    first_day = start.astimezone(zone).date()
    k = max(0, (first_day - rotation.start_date).days // period - 1)
    shifts: list[tuple[dt.datetime, dt.datetime, Any]] = []
    while True:
        day = rotation.start_date + dt.timedelta(days=k * period)
        shift_start = local_moment(day, handoff_time, zone)
        if shift_start >= end:
            break
        shift_end = local_moment(day + dt.timedelta(days=period), handoff_time, zone)
        if shift_end > start:
            shifts.append((shift_start, shift_end, members[k % len(members)]))
        k += 1
    if rotation.restrict_start is not None and rotation.restrict_end is not None and shifts:
        windows = _windows(_time(rotation.restrict_start), _time(rotation.restrict_end), zone, shifts[0][0], end)
        shifts = [(max(s, ws), min(e, we), user) for s, e, user in shifts for ws, we in windows if ws < e and we > s]
    return [
        _Piece(s, e, user, (0, rotation.layer), order, SOURCE_ROTATION, rotation.name, rotation.layer)
        for s, e, user in shifts
    ]


def _windows(
    from_time: dt.time, to_time: dt.time, zone: dt.tzinfo, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Each local day's restriction window overlapping ``[start, end)``; one ending at or before
    its start time ends the next day."""
    crosses_midnight = to_time <= from_time
    day = start.astimezone(zone).date() - dt.timedelta(days=1)
    last = end.astimezone(zone).date()
    windows = []
    while day <= last:
        until = day + dt.timedelta(days=1) if crosses_midnight else day
        windows.append((local_moment(day, from_time, zone), local_moment(until, to_time, zone)))
        day += dt.timedelta(days=1)
    return windows


def _time(value: dt.time | str) -> dt.time:
    return value if isinstance(value, dt.time) else dt.time.fromisoformat(value)


def timeline(
    zone: dt.tzinfo,
    rotations: Iterable[tuple[Rotation, Sequence[Any]]],
    overrides: Iterable[Override],
    start: dt.datetime,
    end: dt.datetime,
) -> list[Shift]:
    """The shifts of ``[start, end)`` from rotations (each with its members in order) and
    overrides already read: the computation itself, with no query (``shifts`` reads for it)."""
    if end <= start:
        return []
    pieces: list[_Piece] = []
    for order, (rotation, members) in enumerate(rotations):
        pieces += _rotation_pieces(rotation, members, zone, start, end, order)
    for order, override in enumerate(sorted(overrides, key=lambda o: (o.start, o.pk or 0))):
        if override.start < end and override.end > start:
            piece = _Piece(override.start, override.end, override.user, (1, 0), order, SOURCE_OVERRIDE)
            pieces.append(replace(piece, override_id=override.pk))
    pieces = [p for p in pieces if p.user.is_active and p.start < end and p.end > start]
    cuts = sorted({start, end, *(p.start for p in pieces if p.start > start), *(p.end for p in pieces if p.end < end)})
    merged: dict[tuple[Any, ...], list[Shift]] = {}
    for seg_start, seg_end in itertools.pairwise(cuts):
        here = [p for p in pieces if p.start <= seg_start and p.end >= seg_end]
        if not here:
            continue
        best = max(p.rank for p in here)
        seen: set[int] = set()
        for piece in sorted((p for p in here if p.rank == best), key=lambda p: p.order):
            if piece.user.pk in seen:
                continue
            seen.add(piece.user.pk)
            key = (piece.user.pk, piece.source, piece.rotation, piece.override_id)
            runs = merged.setdefault(key, [])
            if runs and runs[-1].end == seg_start:
                runs[-1] = replace(runs[-1], end=seg_end)
            else:
                runs.append(
                    Shift(piece.user, seg_start, seg_end, piece.source, piece.rotation, piece.layer, piece.override_id)
                )
    result = [shift for runs in merged.values() for shift in runs]
    return sorted(result, key=lambda s: (s.start, s.source != SOURCE_OVERRIDE, -(s.layer or 0), s.user.pk))


def _with_layers(queryset: Any) -> Any:
    """Schedules with their rotations and members (and users) prefetched: three queries in all."""
    members = RotationMember.objects.select_related("user").order_by("position")
    rotations = Rotation.objects.prefetch_related(Prefetch("members", queryset=members)).order_by("-layer", "pk")
    return queryset.prefetch_related(Prefetch("rotations", queryset=rotations))


def _layers(schedule: Schedule) -> list[tuple[Rotation, list[Any]]]:
    return [(rotation, [m.user for m in rotation.members.all()]) for rotation in schedule.rotations.all()]


def shifts(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[Shift]:
    """Who is on call in ``schedule`` from ``start`` to ``end`` (aware datetimes): the final
    timeline after layers and overrides, shifts cut to the range, sorted by start."""
    loaded = _with_layers(Schedule.objects.filter(pk=schedule.pk)).first()
    if loaded is None:
        return []
    overrides = Override.objects.filter(schedule=loaded, start__lt=end, end__gt=start).select_related("user")
    return timeline(zone_of(loaded), _layers(loaded), overrides, start, end)


def oncall_at(schedule: Schedule, at: dt.datetime) -> list[Any]:
    """The people on call in ``schedule`` at ``at`` ([] when nobody: a gap in every layer)."""
    return [shift.user for shift in shifts(schedule, at, at + dt.timedelta(microseconds=1))]


def oncall_users(slugs: Iterable[str], at: dt.datetime) -> dict[str, list[Any]]:
    """``oncall_at`` of many schedules by slug, in four queries whatever their number (schedules,
    rotations, members with their users, overrides at ``at``). Unknown slugs are absent keys."""
    schedules = list(_with_layers(Schedule.objects.filter(slug__in=set(slugs))))
    overrides: dict[int, list[Override]] = {}
    if schedules:
        current = Override.objects.filter(schedule__in=schedules, start__lte=at, end__gt=at).select_related("user")
        for override in current:
            overrides.setdefault(override.schedule_id, []).append(override)
    moment_after = at + dt.timedelta(microseconds=1)
    return {
        schedule.slug: [
            shift.user
            for shift in timeline(
                zone_of(schedule), _layers(schedule), overrides.get(schedule.pk, []), at, moment_after
            )
        ]
        for schedule in schedules
    }


def user_shifts(user: Any, start: dt.datetime, end: dt.datetime) -> list[tuple[Schedule, Shift]]:
    """One person's shifts in every schedule they are in (a member of a rotation, or covering by
    an override in the range), sorted by start: their personal calendar."""
    in_rotation = Q(rotations__members__user=user)
    covering = Q(overrides__user=user, overrides__start__lt=end, overrides__end__gt=start)
    schedules = list(_with_layers(Schedule.objects.filter(in_rotation | covering).distinct()))
    overrides: dict[int, list[Override]] = {}
    in_range = Override.objects.filter(schedule__in=schedules, start__lt=end, end__gt=start).select_related("user")
    for override in in_range:
        overrides.setdefault(override.schedule_id, []).append(override)
    result = [
        (schedule, shift)
        for schedule in schedules
        for shift in timeline(zone_of(schedule), _layers(schedule), overrides.get(schedule.pk, []), start, end)
        if shift.user.pk == user.pk
    ]
    return sorted(result, key=lambda pair: (pair[1].start, pair[0].name))
