"""Who is on call when: hand-offs at local wall-clock time across daylight-saving changes, the
order of a rotation, layers and restrictions, overrides, gaps, and the batch read's query count."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from oncall.models import Handoff, Override, Rotation, RotationMember, Schedule
from oncall.schedules import local_moment, oncall_at, oncall_users, shifts, user_shifts

H = dt.timedelta(hours=1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def people(make_user):
    return [make_user(username=name) for name in ("alice", "bob", "carol")]


def schedule_with(slug: str = "data-platform", zone: str = "Europe/Paris") -> Schedule:
    return Schedule.objects.create(name=slug.replace("-", " ").title(), slug=slug, timezone=zone)


def rotation(schedule: Schedule, members, **fields) -> Rotation:
    fields = {"name": "Primary", "handoff": Handoff.DAILY, "handoff_time": dt.time(9), **fields}
    fields.setdefault("start_date", dt.date(2026, 3, 1))
    made = Rotation.objects.create(schedule=schedule, **fields)
    for position, user in enumerate(members):
        RotationMember.objects.create(rotation=made, user=user, position=position)
    return made


def names(found) -> list[str]:
    return [user.username for user in found]


# --- daylight saving ------------------------------------------------------------------------------


def test_a_daily_paris_handoff_at_nine_is_at_eight_utc_in_winter_and_seven_in_summer(people):
    schedule = schedule_with()
    rotation(schedule, people[:2], start_date=dt.date(2026, 3, 27))  # alice from Fri 27 Mar 09:00
    found = shifts(schedule, utc(2026, 3, 27, 0), utc(2026, 3, 31, 0))
    starts = [(s.user.username, s.start) for s in found]
    assert starts == [
        ("alice", utc(2026, 3, 27, 8)),  # CET: 09:00 is 08:00 UTC
        ("bob", utc(2026, 3, 28, 8)),
        ("alice", utc(2026, 3, 29, 7)),  # Sunday 29 March the clocks went forward: CEST, 07:00 UTC
        ("bob", utc(2026, 3, 30, 7)),
    ]
    assert [s.duration for s in found[:3]] == [24 * H, 23 * H, 24 * H]  # Saturday's shift is 23 h


def test_the_paris_shift_over_the_autumn_change_lasts_twenty_five_hours(people):
    schedule = schedule_with()
    rotation(schedule, people[:2], start_date=dt.date(2026, 10, 24))
    found = shifts(schedule, utc(2026, 10, 24, 0), utc(2026, 10, 27, 0))
    assert [(s.user.username, s.start) for s in found] == [
        ("alice", utc(2026, 10, 24, 7)),  # CEST
        ("bob", utc(2026, 10, 25, 8)),  # Sunday 25 October the clocks went back: CET
        ("alice", utc(2026, 10, 26, 8)),
    ]
    assert found[0].duration == 25 * H
    assert found[1].duration == 24 * H


@pytest.mark.parametrize(
    ("start_date", "span", "expected_start", "lengths"),
    [
        # 2026-03-08 the clocks go forward at 02:00 in New York: EST (UTC-5) → EDT (UTC-4)
        (dt.date(2026, 3, 7), (utc(2026, 3, 7, 0), utc(2026, 3, 10, 0)), utc(2026, 3, 7, 14), [23 * H, 24 * H]),
        # 2026-11-01 they go back: EDT → EST
        (dt.date(2026, 10, 31), (utc(2026, 10, 31, 0), utc(2026, 11, 3, 0)), utc(2026, 10, 31, 13), [25 * H, 24 * H]),
    ],
)
def test_new_york_hands_off_at_nine_local_on_both_sides_of_each_change(
    people, start_date, span, expected_start, lengths
):
    schedule = schedule_with(zone="America/New_York")
    rotation(schedule, people[:2], start_date=start_date)
    found = shifts(schedule, *span)
    assert found[0].start == expected_start
    assert [s.duration for s in found[:2]] == lengths
    for shift in found:
        assert shift.start.astimezone(zoneinfo.ZoneInfo("America/New_York")).time() == dt.time(9)


def test_a_weekly_rotation_spanning_the_spring_change_is_a_week_less_an_hour(people):
    schedule = schedule_with()
    rotation(schedule, people, handoff=Handoff.WEEKLY, start_date=dt.date(2026, 3, 23))  # Mondays 09:00
    found = shifts(schedule, utc(2026, 3, 23, 0), utc(2026, 4, 14, 0))
    assert [(s.user.username, s.start) for s in found] == [
        ("alice", utc(2026, 3, 23, 8)),
        ("bob", utc(2026, 3, 30, 7)),
        ("carol", utc(2026, 4, 6, 7)),
        ("alice", utc(2026, 4, 13, 7)),
    ]
    assert found[0].duration == 7 * 24 * H - H


def test_a_handoff_in_the_skipped_hour_happens_when_the_clocks_jump():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    # 02:30 does not exist on 29 March 2026 in Paris: the clocks jump from 02:00 to 03:00 (01:00 UTC)
    assert local_moment(dt.date(2026, 3, 29), dt.time(2, 30), paris) == utc(2026, 3, 29, 1)
    # 02:30 happens twice on 25 October 2026: the first one (CEST, 00:30 UTC)
    assert local_moment(dt.date(2026, 10, 25), dt.time(2, 30), paris) == utc(2026, 10, 25, 0, 30)
    assert local_moment(dt.date(2026, 10, 26), dt.time(2, 30), paris) == utc(2026, 10, 26, 1, 30)


def test_a_rotation_handing_off_in_the_skipped_hour_has_no_hole(people):
    schedule = schedule_with()
    rotation(schedule, people[:2], handoff_time=dt.time(2, 30), start_date=dt.date(2026, 3, 27))
    found = shifts(schedule, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert [(s.user.username, s.start, s.end) for s in found] == [
        ("alice", utc(2026, 3, 27, 12), utc(2026, 3, 28, 1, 30)),
        ("bob", utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1)),  # to 03:00 CEST, when the clocks jump
        ("alice", utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),
        ("bob", utc(2026, 3, 30, 0, 30), utc(2026, 3, 30, 12)),
    ]


# --- order, layers, restrictions, overrides, gaps --------------------------------------------------


def test_a_weekly_rotation_takes_its_members_in_order_and_starts_again(people):
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [people[2], people[0], people[1]], handoff=Handoff.WEEKLY, start_date=dt.date(2026, 6, 1))
    found = shifts(schedule, utc(2026, 6, 1, 9), utc(2026, 7, 6, 9))
    assert names(s.user for s in found) == ["carol", "alice", "bob", "carol", "alice"]
    assert oncall_at(schedule, utc(2026, 6, 15, 8, 59)) == [people[0]]  # before Monday's hand-off
    assert oncall_at(schedule, utc(2026, 6, 15, 9)) == [people[1]]


def test_nobody_is_on_call_before_the_first_shift_or_in_an_empty_schedule(people):
    schedule = schedule_with()
    rotation(schedule, people, start_date=dt.date(2026, 6, 1))
    assert oncall_at(schedule, utc(2026, 5, 31, 12)) == []
    assert oncall_at(schedule_with("empty"), utc(2026, 6, 2)) == []
    assert shifts(schedule_with("empty-too"), utc(2026, 6, 1), utc(2026, 7, 1)) == []


def test_a_higher_layer_wins_only_where_its_restriction_lets_it(people):
    alice, bob, _ = people
    schedule = schedule_with()
    rotation(schedule, [alice], name="Around the clock", layer=1, handoff=Handoff.WEEKLY)
    rotation(schedule, [bob], name="Office hours", layer=2, restrict_start=dt.time(9), restrict_end=dt.time(18))
    # Wednesday 3 June 2026 in Paris (CEST, UTC+2)
    assert oncall_at(schedule, utc(2026, 6, 3, 6, 59)) == [alice]  # 08:59 local
    assert oncall_at(schedule, utc(2026, 6, 3, 7)) == [bob]  # 09:00 local
    assert oncall_at(schedule, utc(2026, 6, 3, 15, 59)) == [bob]
    assert oncall_at(schedule, utc(2026, 6, 3, 16)) == [alice]  # 18:00 local
    day = shifts(schedule, utc(2026, 6, 2, 22), utc(2026, 6, 3, 22))  # that local day
    assert [(s.user.username, s.rotation, s.start, s.end) for s in day] == [
        ("alice", "Around the clock", utc(2026, 6, 2, 22), utc(2026, 6, 3, 7)),
        ("bob", "Office hours", utc(2026, 6, 3, 7), utc(2026, 6, 3, 16)),
        ("alice", "Around the clock", utc(2026, 6, 3, 16), utc(2026, 6, 3, 22)),
    ]


def test_a_restriction_ending_before_it_starts_covers_the_night(people):
    alice, bob, _ = people
    schedule = schedule_with()
    rotation(schedule, [alice], name="Day", layer=1)
    rotation(schedule, [bob], name="Night", layer=2, restrict_start=dt.time(22), restrict_end=dt.time(6))
    assert oncall_at(schedule, utc(2026, 6, 3, 19, 59)) == [alice]  # 21:59
    assert oncall_at(schedule, utc(2026, 6, 3, 20)) == [bob]  # 22:00
    assert oncall_at(schedule, utc(2026, 6, 4, 3, 59)) == [bob]  # 05:59 the next day
    assert oncall_at(schedule, utc(2026, 6, 4, 4)) == [alice]


def test_a_restricted_layer_alone_leaves_gaps_where_nobody_is_on_call(people):
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [people[0]], restrict_start=dt.time(9), restrict_end=dt.time(17))
    assert oncall_at(schedule, utc(2026, 6, 3, 20)) == []
    found = shifts(schedule, utc(2026, 6, 3), utc(2026, 6, 5))
    assert [(s.start, s.end) for s in found] == [
        (utc(2026, 6, 3, 9), utc(2026, 6, 3, 17)),
        (utc(2026, 6, 4, 9), utc(2026, 6, 4, 17)),
    ]


def test_an_override_wins_over_every_layer_and_splits_the_shift_it_covers(people, operator):
    alice, bob, carol = people
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [alice], layer=1, handoff=Handoff.WEEKLY, start_date=dt.date(2026, 6, 1))
    rotation(schedule, [bob], layer=2, name="Office hours", restrict_start=dt.time(9), restrict_end=dt.time(17))
    cover = Override.objects.create(
        schedule=schedule, user=carol, start=utc(2026, 6, 3, 12), end=utc(2026, 6, 3, 20), covers=bob
    )
    found = shifts(schedule, utc(2026, 6, 3, 0), utc(2026, 6, 4, 0))
    assert [(s.user.username, s.source, s.start, s.end) for s in found] == [
        ("alice", "rotation", utc(2026, 6, 3, 0), utc(2026, 6, 3, 9)),
        ("bob", "rotation", utc(2026, 6, 3, 9), utc(2026, 6, 3, 12)),
        ("carol", "override", utc(2026, 6, 3, 12), utc(2026, 6, 3, 20)),
        ("alice", "rotation", utc(2026, 6, 3, 20), utc(2026, 6, 4, 0)),
    ]
    assert found[2].override_id == cover.pk
    assert oncall_at(schedule, utc(2026, 6, 3, 19)) == [carol]


def test_overlapping_overrides_put_both_people_on_call(people):
    alice, bob, carol = people
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [alice])
    Override.objects.create(schedule=schedule, user=bob, start=utc(2026, 6, 3, 10), end=utc(2026, 6, 3, 14))
    Override.objects.create(schedule=schedule, user=carol, start=utc(2026, 6, 3, 12), end=utc(2026, 6, 3, 16))
    assert oncall_at(schedule, utc(2026, 6, 3, 13)) == [bob, carol]


def test_an_inactive_person_is_never_on_call(people):
    alice, bob, _ = people
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [alice], layer=1)
    rotation(schedule, [bob], layer=2)
    bob.is_active = False
    bob.save()
    assert oncall_at(schedule, utc(2026, 6, 3, 13)) == [alice]


def test_a_one_person_rotation_is_one_shift_not_one_a_day(people):
    schedule = schedule_with(zone="UTC")
    rotation(schedule, [people[0]], start_date=dt.date(2026, 6, 1))
    found = shifts(schedule, utc(2026, 6, 2), utc(2026, 6, 9))
    assert [(s.start, s.end) for s in found] == [(utc(2026, 6, 2), utc(2026, 6, 9))]


# --- many schedules at once ----------------------------------------------------------------------


def test_oncall_users_answers_many_schedules_in_four_queries(people, django_assert_num_queries):
    alice, bob, carol = people
    for n in range(20):
        schedule = schedule_with(f"team-{n}", zone=("Europe/Paris", "America/New_York", "UTC")[n % 3])
        rotation(schedule, [alice, bob], layer=1)
        rotation(schedule, [carol], layer=2, restrict_start=dt.time(9), restrict_end=dt.time(17))
        Override.objects.create(schedule=schedule, user=bob, start=utc(2026, 6, 3), end=utc(2026, 6, 3, 1))
    slugs = [f"team-{n}" for n in range(20)] * 25 + ["nobody-knows"]  # 501, as routing batches them
    with django_assert_num_queries(4):
        found = oncall_users(slugs, utc(2026, 6, 3, 0, 30))
    assert set(found) == {f"team-{n}" for n in range(20)}
    assert all(users == [bob] for users in found.values())  # the override, at 00:30 UTC
    later = oncall_users(["team-0", "team-2"], utc(2026, 6, 3, 12))
    assert later == {"team-0": [carol], "team-2": [carol]}


def test_oncall_users_of_no_known_schedule_is_empty(db):
    assert oncall_users(["nope"], utc(2026, 6, 3)) == {}
    assert oncall_users([], utc(2026, 6, 3)) == {}


def test_a_persons_shifts_across_schedules(people):
    alice, bob, _ = people
    first = schedule_with("first", zone="UTC")
    rotation(first, [alice, bob], start_date=dt.date(2026, 6, 1))
    second = schedule_with("second", zone="UTC")
    rotation(second, [bob])
    Override.objects.create(schedule=second, user=alice, start=utc(2026, 6, 2, 12), end=utc(2026, 6, 2, 14))
    found = user_shifts(alice, utc(2026, 6, 1), utc(2026, 6, 4))
    assert [(schedule.slug, s.start, s.end) for schedule, s in found] == [
        ("first", utc(2026, 6, 1, 9), utc(2026, 6, 2, 9)),
        ("second", utc(2026, 6, 2, 12), utc(2026, 6, 2, 14)),
        ("first", utc(2026, 6, 3, 9), utc(2026, 6, 4)),
    ]
