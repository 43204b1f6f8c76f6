"""Overrides through the service: who, from when to when, validated with the field named."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import InvalidInput
from oncall.models import Override
from oncall.schedules import oncall_at
from oncall.services import override_delete, override_save, rotation_save, schedule_save

START = dt.datetime(2026, 6, 3, 12, tzinfo=dt.UTC)


@pytest.fixture
def schedule(operator):
    return schedule_save(user=operator, data={"name": "Data platform", "slug": "data-platform", "timezone": "UTC"})


@pytest.fixture
def people(make_user):
    return [make_user(username=name) for name in ("alice", "bob")]


def test_an_override_puts_someone_on_call_and_its_removal_gives_the_shift_back(schedule, operator, people):
    alice, bob = people
    data = {"name": "Primary", "handoff": "WEEKLY", "start_date": dt.date(2026, 6, 1)}
    rotation_save(user=operator, schedule=schedule, data=data, members=[alice])
    override = override_save(
        user=operator,
        schedule=schedule,
        data={"user": bob, "start": START, "end": START + dt.timedelta(hours=4), "covers": alice, "reason": "dentist"},
    )
    assert override.created_by == operator
    assert override.history.get().history_user == operator
    assert oncall_at(schedule, START + dt.timedelta(hours=1)) == [bob]
    override_delete(user=operator, override=override)
    assert oncall_at(schedule, START + dt.timedelta(hours=1)) == [alice]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end": START}, "end"),
        ({"end": START - dt.timedelta(hours=1)}, "end"),
        ({"start": dt.datetime(2026, 6, 3, 12)}, "start"),
        ({"start": None}, "start"),
        ({"user": None}, "user"),
        ({"note": "?"}, "note"),
    ],
)
def test_override_errors_name_the_field_and_write_nothing(schedule, operator, people, changes, field):
    data = {"user": people[0], "start": START, "end": START + dt.timedelta(hours=2), **changes}
    with pytest.raises(InvalidInput) as refused:
        override_save(user=operator, schedule=schedule, data=data)
    assert field in refused.value.errors
    assert not Override.objects.exists()


def test_an_inactive_person_cannot_cover(schedule, operator, people):
    people[1].is_active = False
    people[1].save()
    with pytest.raises(InvalidInput) as refused:
        override_save(
            user=operator, schedule=schedule, data={"user": people[1], "start": START, "end": START + dt.timedelta(1)}
        )
    assert refused.value.errors == {"user": ["bob is not an active account."]}
