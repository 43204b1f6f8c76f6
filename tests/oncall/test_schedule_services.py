"""Writing schedules, rotations and overrides through the services: validation naming the field
with nothing written, the Operator's permissions (a Viewer refused), turn order, history."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import InvalidInput, PermissionRefused
from oncall.models import Override, Rotation, RotationMember, Schedule
from oncall.services import override_delete, override_save, rotation_delete, rotation_save, schedule_save


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def people(make_user):
    return [make_user(username=name) for name in ("alice", "bob", "carol")]


@pytest.fixture
def schedule(operator) -> Schedule:
    return schedule_save(
        user=operator, data={"name": "Data platform", "slug": "data-platform", "timezone": "Europe/Paris"}
    )


def daily(**changes):
    return {
        "name": "Primary",
        "handoff": "DAILY",
        "handoff_time": dt.time(9),
        "start_date": dt.date(2026, 6, 1),
        **changes,
    }


def test_an_operator_creates_a_schedule_and_its_history_names_them(schedule, operator):
    assert schedule.timezone == "Europe/Paris"
    assert schedule.history.get().history_user == operator


def test_a_time_zone_must_be_a_real_iana_zone(operator):
    with pytest.raises(InvalidInput) as refused:
        schedule_save(user=operator, data={"name": "X", "slug": "x", "timezone": "Europe/Parris"})
    assert "timezone" in refused.value.errors
    assert not Schedule.objects.exists()


def test_unknown_fields_and_duplicate_slugs_are_named(schedule, operator):
    with pytest.raises(InvalidInput) as refused:
        schedule_save(user=operator, data={"name": "Y", "slug": "y", "colour": "red"})
    assert refused.value.errors == {"colour": ["Unknown field."]}
    with pytest.raises(InvalidInput) as refused:
        schedule_save(user=operator, data={"name": "Other", "slug": "data-platform"})
    assert "slug" in refused.value.errors


def test_a_viewer_may_not_write_anything(schedule, viewer, people, operator):
    with pytest.raises(PermissionRefused, match="manage on-call schedules"):
        schedule_save(user=viewer, data={"name": "Mine", "slug": "mine"})
    with pytest.raises(PermissionRefused):
        schedule_save(user=viewer, data={"description": "changed"}, schedule=schedule)
    with pytest.raises(PermissionRefused):
        rotation_save(user=viewer, schedule=schedule, data=daily(), members=people)
    start = utc(2026, 6, 1, 12)
    with pytest.raises(PermissionRefused, match="overrides"):
        override_save(user=viewer, schedule=schedule, data={"user": viewer, "start": start, "end": start})
    override = override_save(
        user=operator, schedule=schedule, data={"user": people[0], "start": start, "end": start + dt.timedelta(hours=1)}
    )
    with pytest.raises(PermissionRefused):
        override_delete(user=viewer, override=override)
    assert Override.objects.filter(pk=override.pk).exists()
    assert not Rotation.objects.exists()


def test_members_are_kept_in_the_order_given_and_replaced_as_a_whole(schedule, operator, people):
    alice, bob, carol = people
    rotation = rotation_save(user=operator, schedule=schedule, data=daily(), members=[carol, alice])
    assert [(m.position, m.user) for m in rotation.members.all()] == [(0, carol), (1, alice)]
    rotation_save(
        user=operator, schedule=schedule, data={"name": "First line"}, members=[bob, carol], rotation=rotation
    )
    rotation.refresh_from_db()
    assert rotation.name == "First line"
    assert [m.user for m in rotation.members.all()] == [bob, carol]
    assert RotationMember.history.filter(history_type="-").count() == 2
    assert set(RotationMember.history.values_list("history_user", flat=True)) == {operator.pk}


def test_members_must_be_active_accounts(schedule, operator, people):
    people[1].is_active = False
    people[1].save()
    with pytest.raises(InvalidInput) as refused:
        rotation_save(user=operator, schedule=schedule, data=daily(), members=people)
    assert refused.value.errors == {"members": ["Not an active account: bob."]}
    assert not Rotation.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"restrict_start": dt.time(9)}, "restrict_end"),
        ({"restrict_end": dt.time(17)}, "restrict_start"),
        ({"restrict_start": dt.time(9), "restrict_end": dt.time(9)}, "restrict_end"),
        ({"handoff": "HOURLY"}, "handoff"),
        ({"start_date": None}, "start_date"),
        ({"name": ""}, "name"),
    ],
)
def test_rotation_errors_name_the_field_and_write_nothing(schedule, operator, people, changes, field):
    with pytest.raises(InvalidInput) as refused:
        rotation_save(user=operator, schedule=schedule, data=daily(**changes), members=people)
    assert field in refused.value.errors
    assert not Rotation.objects.exists()
    assert not RotationMember.objects.exists()


def test_a_rotation_is_changed_only_in_its_own_schedule(schedule, operator, people):
    rotation = rotation_save(user=operator, schedule=schedule, data=daily(), members=people)
    other = schedule_save(user=operator, data={"name": "Other", "slug": "other"})
    with pytest.raises(InvalidInput) as refused:
        rotation_save(user=operator, schedule=other, data={"name": "Stolen"}, rotation=rotation)
    assert "schedule" in refused.value.errors


def test_an_operator_removes_a_rotation_with_its_members(schedule, operator, viewer, people):
    rotation = rotation_save(user=operator, schedule=schedule, data=daily(), members=people)
    with pytest.raises(PermissionRefused):
        rotation_delete(user=viewer, rotation=rotation)
    rotation_delete(user=operator, rotation=rotation)
    assert not Rotation.objects.exists()
    assert not RotationMember.objects.exists()
