"""When a loader's schedule expects its runs: the slots around a moment, in the loader's time zone.

One reading for every part of the product: the missed-run rule (``incidents.kinds.etl.MissedRun``)
and the overview's late/missed statuses (``operations.selectors``) both ask here, so a loader the
overview calls missed is one detection reports.

Cron is read in the version's IANA time zone (croniter on aware datetimes), so daylight-saving
changes move the UTC time as they should; on the night clocks go back a wall time exists twice
and the earlier instant counts (a run at either one counts). Many loaders share a schedule, so a
``ScheduleClock`` computes each (cron, zone, moment) once per page.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from croniter import croniter

# A run that starts a little before its slot still counts for it (clocks drift, jobs start
# early): a quarter of the schedule's period, at most five minutes. A fixed five minutes would let
# the previous slot's run of a loader every five minutes satisfy the current one.
EARLY_TOLERANCE_FRACTION = 0.25
EARLY_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Slot:
    """The latest scheduled time at or before a moment, and the time since the slot before it."""

    at: dt.datetime
    period: dt.timedelta

    def tolerance(
        self, fraction: float = EARLY_TOLERANCE_FRACTION, cap_seconds: float = EARLY_TOLERANCE_SECONDS
    ) -> dt.timedelta:
        """How early a run may start and still count for this slot."""
        return dt.timedelta(seconds=min(cap_seconds, fraction * self.period.total_seconds()))


def slot_utc(wall_aware: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A slot croniter gave in local time, in UTC; of a wall time that exists twice, the earlier."""
    wall = wall_aware.replace(tzinfo=None)
    return min(wall.replace(tzinfo=zone, fold=fold).astimezone(dt.UTC) for fold in (0, 1))


class ScheduleClock:
    """Cron slots at fixed moments, memoised: a page of 1,000 loaders with a dozen distinct
    schedules costs a dozen croniter walks, not a thousand."""

    def __init__(self) -> None:
        self._previous: dict[tuple[str, str, dt.datetime], Slot | None] = {}
        self._next: dict[tuple[str, str, dt.datetime], dt.datetime | None] = {}

    def previous(self, cron: str, timezone_name: str, at: dt.datetime) -> Slot | None:
        """The latest slot at or before ``at`` (None for an empty or unreadable schedule)."""
        key = (cron, timezone_name, at)
        if key not in self._previous:
            self._previous[key] = previous_slot(cron, timezone_name, at)
        return self._previous[key]

    def next(self, cron: str, timezone_name: str, after: dt.datetime) -> dt.datetime | None:
        """The first slot after ``after``, in UTC (None for an empty or unreadable schedule)."""
        key = (cron, timezone_name, after)
        if key not in self._next:
            self._next[key] = next_slot(cron, timezone_name, after)
        return self._next[key]


def _zone(timezone_name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(timezone_name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def previous_slot(cron: str, timezone_name: str, at: dt.datetime) -> Slot | None:
    """The latest slot at or before ``at`` (None for an empty or unreadable schedule or zone)."""
    zone = _zone(timezone_name)
    if not cron or zone is None:
        return None
    try:
        walk = croniter(cron, at.astimezone(zone))
        latest = walk.get_prev(dt.datetime)
        before = walk.get_prev(dt.datetime)
    except (ValueError, KeyError):
        return None
    slot = slot_utc(latest, zone)
    return Slot(at=slot, period=slot - slot_utc(before, zone))


def next_slot(cron: str, timezone_name: str, after: dt.datetime) -> dt.datetime | None:
    """The first slot after ``after``, in UTC (None for an empty or unreadable schedule or zone)."""
    zone = _zone(timezone_name)
    if not cron or zone is None:
        return None
    try:
        return slot_utc(croniter(cron, after.astimezone(zone)).get_next(dt.datetime), zone)
    except (ValueError, KeyError):
        return None
