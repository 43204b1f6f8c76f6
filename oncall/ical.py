"""Calendar feeds (RFC 5545, written by the ``icalendar`` library): a schedule's shifts, or one
person's across schedules, from a week ago to two months ahead, so people see their shifts in
the calendar they already read."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import icalendar

from oncall.models import CalendarToken, Schedule
from oncall.schedules import SOURCE_OVERRIDE, Shift, shifts, user_shifts

FEED_PAST = dt.timedelta(days=7)
FEED_AHEAD = dt.timedelta(days=60)
# Shifts are read from further back than shown, so one that began before the window keeps its
# real start (and so its UID) instead of one cut at the window's edge that moves every day.
READ_BEHIND = dt.timedelta(days=35)
PRODID = "-//ETL Monitor//On-call//EN"


def shift_uid(schedule: Schedule, shift: Shift) -> str:
    """The same shift has the same UID in every fetch, so calendars update it instead of
    adding a copy: it is derived from the schedule, the person, what put them on call and when."""
    parts = (schedule.pk, shift.user.pk, shift.source, shift.rotation, shift.override_id, int(shift.start.timestamp()))
    origin = ":".join(map(str, parts))
    return f"{hashlib.sha256(origin.encode()).hexdigest()[:32]}@etl-monitor"


def _person(user: Any) -> str:
    return user.get_full_name() or user.get_username()


def feed_entries(token: CalendarToken, now: dt.datetime) -> list[tuple[Schedule, Shift]]:
    """The shifts a token's feed shows at ``now``: those ending after a week ago and starting
    before two months ahead."""
    start, end = now - FEED_PAST, now + FEED_AHEAD
    if token.schedule is not None:
        found = [(token.schedule, shift) for shift in shifts(token.schedule, start - READ_BEHIND, end)]
    else:
        found = user_shifts(token.user, start - READ_BEHIND, end)
    return [(schedule, shift) for schedule, shift in found if shift.end > start]


def calendar_feed(token: CalendarToken, now: dt.datetime) -> bytes:
    """The iCalendar text of a token's feed: one event per shift, in UTC. A schedule's feed says
    who is on call; a person's says in which schedule."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    title = f"On call: {token.schedule}" if token.schedule is not None else f"On call: {_person(token.user)}"
    calendar.add("x-wr-calname", title)
    for schedule, shift in feed_entries(token, now):
        event = icalendar.Event()
        event.add("uid", shift_uid(schedule, shift))
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("dtstart", shift.start.astimezone(dt.UTC))
        event.add("dtend", shift.end.astimezone(dt.UTC))
        summary = _person(shift.user) if token.schedule is not None else f"On call: {schedule}"
        event.add("summary", summary)
        origin = "override" if shift.source == SOURCE_OVERRIDE else f"rotation {shift.rotation}"
        event.add("description", f"{_person(shift.user)} on call in {schedule} ({origin}).")
        calendar.add_component(event)
    return calendar.to_ical()
