"""Calendar feeds: the secret URL gives a schedule's (or a person's) shifts as iCalendar, read back
with the icalendar library; a revoked or unknown token is a 404; who may make and revoke them."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from etl_monitor.errors import PermissionRefused
from oncall.models import CalendarToken
from oncall.services import (
    calendar_token_create,
    calendar_token_revoke,
    override_save,
    rotation_save,
    schedule_save,
)


@pytest.fixture
def people(make_user):
    return [make_user(username=name, first_name=name.title()) for name in ("alice", "bob")]


@pytest.fixture
def schedule(operator, people):
    made = schedule_save(user=operator, data={"name": "Data platform", "slug": "data-platform", "timezone": "UTC"})
    start_date = timezone.now().date() - dt.timedelta(days=30)
    data = {"name": "Primary", "handoff": "DAILY", "handoff_time": dt.time(9), "start_date": start_date}
    rotation_save(user=operator, schedule=made, data=data, members=people)
    return made


def fetch(raw: str):
    return Client().get(f"/oncall/calendar/{raw}.ics")


def events(response) -> list:
    return icalendar.Calendar.from_ical(response.content).walk("VEVENT")


def test_a_schedule_feed_lists_its_shifts_from_a_week_ago_to_two_months_ahead(schedule, operator):
    token, raw = calendar_token_create(user=operator, schedule=schedule)
    assert raw.startswith("etlc_") and token.prefix == raw[:12]
    assert token.token_hash != raw and raw not in token.token_hash  # only a digest is kept

    response = fetch(raw)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    assert response["Cache-Control"].startswith("private")
    found = events(response)
    now = timezone.now()
    assert 66 <= len(found) <= 69  # a shift a day, from 7 days ago to 60 ahead
    starts = [event.decoded("dtstart") for event in found]
    assert all(start.utcoffset() == dt.timedelta(0) for start in starts)
    assert min(starts) <= now - dt.timedelta(days=6) and max(starts) >= now + dt.timedelta(days=59)
    assert {str(event["summary"]) for event in found} == {"Alice", "Bob"}
    # a day each, the last one cut where the feed ends
    assert all(event.decoded("dtend") - event.decoded("dtstart") == dt.timedelta(days=1) for event in found[:-1])
    again = {str(event["uid"]) for event in events(fetch(raw))}
    assert again == {str(event["uid"]) for event in found}  # stable: calendars update, not duplicate
    assert len(again) == len(found)


def test_a_persons_feed_shows_only_their_shifts_and_an_override(schedule, operator, people):
    alice = people[0]
    start = (timezone.now() + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    override_save(
        user=operator, schedule=schedule, data={"user": alice, "start": start, "end": start + dt.timedelta(hours=2)}
    )
    _, raw = calendar_token_create(user=alice)  # anyone may make a feed of their own shifts
    found = events(fetch(raw))
    assert {str(event["summary"]) for event in found} == {"On call: Data platform"}
    assert all(str(event["description"]).startswith("Alice on call") for event in found)
    assert start in [event.decoded("dtstart") for event in found]
    assert "override" in " ".join(str(event["description"]) for event in found)
    assert 30 <= len(found) <= 38  # every other day, and the override


def test_a_revoked_or_unknown_token_is_a_404(schedule, operator):
    token, raw = calendar_token_create(user=operator, schedule=schedule)
    calendar_token_revoke(user=operator, token=token)
    assert fetch(raw).status_code == 404
    assert fetch("etlc_" + "x" * 43).status_code == 404
    assert CalendarToken.objects.get().revoked_by == operator


def test_a_viewer_may_have_their_own_feed_but_not_a_schedules(schedule, viewer, operator):
    with pytest.raises(PermissionRefused, match="calendar feed"):
        calendar_token_create(user=viewer, schedule=schedule)
    own, _ = calendar_token_create(user=viewer)
    assert own.user == viewer and own.schedule is None
    schedules_feed, _ = calendar_token_create(user=operator, schedule=schedule)
    with pytest.raises(PermissionRefused):
        calendar_token_revoke(user=viewer, token=schedules_feed)
    operators_own, _ = calendar_token_create(user=operator)
    with pytest.raises(PermissionRefused):
        calendar_token_revoke(user=viewer, token=operators_own)
    calendar_token_revoke(user=viewer, token=own)


def test_the_feed_answers_get_only(schedule, operator):
    _, raw = calendar_token_create(user=operator, schedule=schedule)
    assert Client().post(f"/oncall/calendar/{raw}.ics").status_code == 405
