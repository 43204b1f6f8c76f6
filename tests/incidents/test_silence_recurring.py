"""Recurring silences (weekdays, start time, duration, time zone → RRULE), silence validation, and
the silence list saying which are active now."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused
from incidents.models import Silence
from incidents.silences import silence_describe, silence_is_active, silence_recurring_save, silence_save

BERLIN = "Europe/Berlin"


def window(user, **changes) -> Silence:
    """Mondays and Wednesdays 22:00–23:30 Berlin time, from Monday 2 Nov 2026."""
    given = {
        "weekdays": ["MO", "WE"],
        "start_time": dt.time(22, 0),
        "duration_minutes": 90,
        "timezone_name": BERLIN,
        "matchers": {},
        "comment": "nightly DB maintenance",
        "starts_on": dt.date(2026, 11, 2),
        **changes,
    }
    return silence_recurring_save(user=user, **given)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_it_stores_the_window_as_a_weekly_rrule_from_the_first_matching_day(operator):
    silence = window(operator, starts_on=dt.date(2026, 11, 3))  # a Tuesday: the first window is Wednesday
    assert silence.recurrence == "FREQ=WEEKLY;BYDAY=MO,WE"
    assert silence.timezone == BERLIN
    assert silence.starts_at == utc(2026, 11, 4, 21, 0)  # 22:00 in Berlin (winter time)
    assert silence.ends_at - silence.starts_at == dt.timedelta(minutes=90)


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (utc(2026, 11, 9, 21, 30), True),  # Monday 22:30 Berlin
        (utc(2026, 11, 9, 22, 29), True),  # Monday 23:29
        (utc(2026, 11, 9, 22, 31), False),  # Monday 23:31: the window is over
        (utc(2026, 11, 10, 21, 30), False),  # Tuesday 22:30: not one of its days
        (utc(2026, 11, 11, 21, 5), True),  # Wednesday 22:05
        (utc(2026, 11, 2, 20, 59), False),  # before the first window
        (utc(2027, 6, 7, 20, 30), True),  # a Monday in summer time: 22:30 Berlin is 20:30 UTC
        (utc(2027, 6, 7, 21, 45), False),  # 23:45 Berlin
    ],
)
def test_it_is_active_in_its_windows_only_in_its_time_zone(operator, at, active):
    assert silence_is_active(window(operator), at) is active


def test_no_window_starts_after_its_last_day(operator):
    silence = window(operator, until=dt.date(2026, 11, 30))
    assert silence_is_active(silence, utc(2026, 11, 30, 21, 30))  # Monday 30 Nov: the last day
    assert not silence_is_active(silence, utc(2026, 12, 2, 21, 30))  # the Wednesday after


def test_it_reads_in_words_in_the_list(operator):
    assert silence_describe(window(operator)) == "Every Mon, Wed 22:00–23:30 (Europe/Berlin)"
    weekdays = window(operator, weekdays=["mo", "tu", "we", "th", "fr"], until=dt.date(2027, 1, 31))
    assert silence_describe(weekdays) == "Every weekday 22:00–23:30 (Europe/Berlin), until 31 Jan 2027"


def test_a_one_off_silence_reads_as_its_range(operator):
    silence = Silence(starts_at=utc(2026, 12, 3, 18, 5), ends_at=utc(2026, 12, 3, 19, 5), timezone="UTC")
    assert silence_describe(silence) == "Thu 03 Dec 2026 18:05 → 19:05"


def test_an_rrule_the_words_do_not_cover_is_shown_as_stored(operator):
    silence = Silence(
        starts_at=utc(2026, 12, 1, 1, 0), ends_at=utc(2026, 12, 1, 2, 0), recurrence="FREQ=MONTHLY;BYMONTHDAY=1"
    )
    assert silence_describe(silence).startswith("Repeats: FREQ=MONTHLY;BYMONTHDAY=1 from 01 Dec 2026 01:00 for 1 h")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"weekdays": ["MO", "XX"]}, "weekdays"),
        ({"weekdays": []}, "weekdays"),
        ({"timezone_name": "Mars/Olympus_Mons"}, "timezone"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": None}, "duration_minutes"),
        ({"start_time": None}, "start_time"),
        ({"until": dt.date(2026, 10, 1)}, "until"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(operator, changes, field):
    with pytest.raises(InvalidInput) as error:
        window(operator, **changes)
    assert field in error.value.errors
    assert not Silence.objects.exists()


def test_a_silence_that_ends_before_it_starts_is_refused_naming_the_end(operator):
    with pytest.raises(InvalidInput) as error:
        silence_save(
            user=operator,
            data={"comment": "x", "starts_at": utc(2026, 12, 3, 12, 0), "ends_at": utc(2026, 12, 3, 11, 0)},
        )
    assert "ends_at" in error.value.errors
    assert not Silence.objects.exists()


@pytest.mark.parametrize("role", ["Viewer", "Editor", "Approver"])
def test_roles_without_silence_rights_cannot_write_a_recurring_one(make_user, role):
    with pytest.raises(PermissionRefused):
        window(make_user(role))
    assert not Silence.objects.exists()


# --- the admin: the recurring form and the list --------------------------------------------------------

FORM = {
    "weekdays": ["SA", "SU"],
    "start_time": "01:00",
    "duration_minutes": "120",
    "timezone": BERLIN,
    "loader": "SALES-DAILY",
    "comment": "weekend batch window",
}


def test_an_operator_adds_a_recurring_silence_through_the_form(client, operator, active_loader):
    client.force_login(operator)
    response = client.post("/admin/incidents/silence/recurring/", FORM)
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert (silence.recurrence, silence.loader_id, silence.timezone) == (
        "FREQ=WEEKLY;BYDAY=SA,SU",
        active_loader.pk,
        BERLIN,
    )
    page = client.get(response["Location"]).content.decode()
    assert "Every Sat, Sun 01:00–03:00 (Europe/Berlin)" in page


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"weekdays": ["XX"]}, "weekdays"),
        ({"duration_minutes": "0"}, "duration_minutes"),
    ],
)
def test_the_recurring_form_shows_the_error_at_its_field_and_writes_nothing(
    client, operator, active_loader, changes, field
):
    client.force_login(operator)
    response = client.post("/admin/incidents/silence/recurring/", {**FORM, **changes})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Silence.objects.exists()


@pytest.mark.parametrize(("role", "status"), [("Viewer", 403), ("Editor", 403), ("Operator", 200), ("Admin", 200)])
def test_the_recurring_form_obeys_each_role(client, make_user, role, status):
    client.force_login(make_user(role))
    assert client.get("/admin/incidents/silence/recurring/").status_code == status
    if status == 403:
        assert client.post("/admin/incidents/silence/recurring/", FORM).status_code == 403
        assert not Silence.objects.exists()


def test_the_list_says_which_silences_are_active_now_and_filters_them(client, viewer, operator):
    now = timezone.now()
    current = silence_save(
        user=operator,
        data={"comment": "now", "starts_at": now - dt.timedelta(hours=1), "ends_at": now + dt.timedelta(hours=1)},
    )
    later = silence_save(
        user=operator,
        data={"comment": "later", "starts_at": now + dt.timedelta(days=1), "ends_at": now + dt.timedelta(days=2)},
    )
    client.force_login(viewer)
    response = client.get("/admin/incidents/silence/")
    page = response.content.decode()
    assert page.count('badge-ok">Active now<') == 1 and page.count('badge-none">Not active<') == 1
    shown = client.get("/admin/incidents/silence/?active_now=yes").context["cl"].result_list
    assert [s.pk for s in shown] == [current.pk]
    shown = client.get("/admin/incidents/silence/?active_now=no").context["cl"].result_list
    assert [s.pk for s in shown] == [later.pk]


def test_a_new_silence_starts_now_and_lasts_an_hour_unless_changed(client, operator):
    client.force_login(operator)
    form = client.get("/admin/incidents/silence/add/").context["adminform"].form
    starts, ends = form.initial["starts_at"], form.initial["ends_at"]
    assert abs((starts - timezone.now()).total_seconds()) < 120 and ends - starts == dt.timedelta(hours=1)


def test_a_silence_the_service_refuses_comes_back_as_typed_with_each_error_under_its_field(client, operator):
    """The service's refusal (InvalidInput) in the admin: the form again with what was typed,
    nothing saved, not a redirect to an empty form (etl_monitor.admin.ServiceErrorMessagesMixin)."""
    client.force_login(operator)
    response = client.post(
        "/admin/incidents/silence/add/",
        {
            "starts_at_0": "2026-12-24",
            "starts_at_1": "18:00:00",
            "ends_at_0": "2026-12-24",
            "ends_at_1": "17:00:00",
            "timezone": "Europe/Paris",
            "recurrence": "FREQ=YEARLY",
            "comment": "",
        },
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["ends_at"] == ["Must be after the start."]
    assert form.errors["comment"] == ["A silence of everything needs a comment saying why."]
    page = response.content.decode()
    assert 'value="FREQ=YEARLY"' in page and 'value="18:00:00"' in page and "Europe/Paris" in page
    assert not Silence.objects.exists()
