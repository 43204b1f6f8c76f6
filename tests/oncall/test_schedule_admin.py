"""The schedule admin: an Operator builds a schedule with its layers and people in turn order and
its overrides (through the services, errors on the fields), sees who is on call now and the next
14 days, and makes or revokes a calendar feed; a Viewer reads the same page and writes nothing."""

from __future__ import annotations

import datetime as dt
import re

import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from oncall.models import CalendarToken, Override, Rotation, Schedule
from oncall.schedules_admin import schedule_days
from oncall.services import override_save, rotation_save, schedule_save


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def people(make_user):
    return [make_user(username=name, email=f"{name}@example.com") for name in ("alice", "bob", "carol")]


@pytest.fixture
def schedule(operator, people):
    made = schedule_save(
        user=operator, data={"name": "Data platform", "slug": "data-platform", "timezone": "Europe/Paris"}
    )
    data = {"name": "Primary", "handoff": "DAILY", "start_date": timezone.now().date() - dt.timedelta(days=3)}
    rotation_save(user=operator, schedule=made, data=data, members=people[:2])
    return made


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def new_schedule_post(**rotation_changes) -> dict[str, str]:
    rotation = {
        "name": "Primary",
        "layer": "1",
        "handoff": "WEEKLY",
        "handoff_time": "09:00",
        "start_date": "2026-06-01",
        "restrict_start": "",
        "restrict_end": "",
        "members": "carol, alice@example.com\nbob",
        **rotation_changes,
    }
    return {
        "name": "Warehouse",
        "slug": "warehouse",
        "timezone": "America/New_York",
        "description": "",
        **management("rotations", 1),
        **{f"rotations-0-{name}": value for name, value in rotation.items()},
        **management("overrides", 0),
    }


def test_an_operator_adds_a_schedule_with_a_layer_and_its_people_in_order(operator, people):
    response = client_for(operator).post("/admin/oncall/schedule/add/", new_schedule_post())
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    schedule = Schedule.objects.get(slug="warehouse")
    rotation = schedule.rotations.get()
    assert [m.user.username for m in rotation.members.all()] == ["carol", "alice", "bob"]
    assert rotation.history.get().history_user == operator
    assert schedule.history.get().history_user == operator


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"restrict_start": "09:00"}, "restrict_end", "both"),
        ({"members": "alice, zed"}, "members", "zed"),
    ],
)
def test_a_layer_error_shows_on_its_field_and_nothing_is_written(operator, people, changes, field, message):
    response = client_for(operator).post("/admin/oncall/schedule/add/", new_schedule_post(**changes))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.forms[0].errors
    assert message in " ".join(errors[field])
    assert not Schedule.objects.exists()


def test_a_bad_time_zone_is_refused_on_its_field(operator, people):
    response = client_for(operator).post(
        "/admin/oncall/schedule/add/", {**new_schedule_post(), "timezone": "Mars/Olympus"}
    )
    assert response.status_code == 200
    assert "timezone" in response.context["adminform"].form.errors
    assert not Rotation.objects.exists()


def test_an_operator_changes_the_order_and_adds_an_override_on_the_schedule_page(schedule, operator, people):
    rotation = schedule.rotations.get()
    page = client_for(operator).get(f"/admin/oncall/schedule/{schedule.pk}/change/")
    assert page.status_code == 200
    start = timezone.now().astimezone(dt.UTC) + dt.timedelta(days=1)
    data = {
        "name": schedule.name,
        "slug": schedule.slug,
        "timezone": schedule.timezone,
        "description": "",
        **management("rotations", 1, 1),
        "rotations-0-id": str(rotation.pk),
        "rotations-0-schedule": str(schedule.pk),
        "rotations-0-name": "Primary",
        "rotations-0-layer": "1",
        "rotations-0-handoff": "DAILY",
        "rotations-0-handoff_time": "09:00",
        "rotations-0-start_date": rotation.start_date.isoformat(),
        "rotations-0-members": "bob, alice, carol",
        **management("overrides", 1),
        "overrides-0-user": str(people[2].pk),
        "overrides-0-start_0": start.strftime("%Y-%m-%d"),
        "overrides-0-start_1": "10:00:00",
        "overrides-0-end_0": start.strftime("%Y-%m-%d"),
        "overrides-0-end_1": "12:00:00",
        "overrides-0-reason": "swap",
    }
    response = client_for(operator).post(f"/admin/oncall/schedule/{schedule.pk}/change/", data)
    assert response.status_code == 302
    assert [m.user.username for m in rotation.members.all()] == ["bob", "alice", "carol"]
    override = Override.objects.get()
    assert override.user == people[2] and override.created_by == operator


def test_the_page_shows_who_is_on_call_now_and_the_next_fourteen_days(schedule, operator, people):
    now = timezone.now()
    override_save(
        user=operator,
        schedule=schedule,
        data={"user": people[2], "start": now + dt.timedelta(days=2), "end": now + dt.timedelta(days=2, hours=3)},
    )
    page = client_for(operator).get(f"/admin/oncall/schedule/{schedule.pk}/change/")
    assert page.status_code == 200
    assert len(page.context["days"]) == 14
    current = page.context["oncall_now"]
    assert len(current) == 1 and current[0] in people[:2]
    html = page.content.decode()
    assert "On call now" in html and "Europe/Paris" in html
    assert 'badge-info">override</span>' in html
    assert any(
        entry["override"] and entry["user"] == people[2] for row in page.context["days"] for entry in row["entries"]
    )


def test_the_list_says_who_is_on_call_now(schedule, operator):
    page = client_for(operator).get("/admin/oncall/schedule/")
    assert page.status_code == 200
    assert re.search(r"(alice|bob)</td>", page.content.decode())


def test_an_operator_makes_a_schedule_feed_shown_once_and_revokes_it(schedule, operator):
    client = client_for(operator)
    created = client.post(f"/admin/oncall/schedule/{schedule.pk}/calendar-feed/", {"feed": "schedule"})
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    url = created.context["feed_url"]
    path = url.split("testserver", 1)[1]
    feed = Client().get(path)
    assert feed.status_code == 200
    assert icalendar.Calendar.from_ical(feed.content).walk("VEVENT")
    page = client.get(f"/admin/oncall/schedule/{schedule.pk}/change/").content.decode()
    assert path.split("/")[-1].removesuffix(".ics") not in page  # never shown again
    token = CalendarToken.objects.get()
    assert token.prefix in page
    revoked = client.post(f"/admin/oncall/schedule/{schedule.pk}/calendar-feed/{token.pk}/revoke/")
    assert revoked.status_code == 302
    assert Client().get(path).status_code == 404


def test_a_viewer_reads_the_page_but_writes_nothing(schedule, viewer, people):
    client = client_for(viewer)
    page = client.get(f"/admin/oncall/schedule/{schedule.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "On call now" in html
    assert 'name="_save"' not in html
    assert "alice, bob" in html  # the layer's people, read only
    assert "feed-create-schedule" not in html
    assert client.get("/admin/oncall/schedule/add/").status_code == 403
    posted = client.post(
        f"/admin/oncall/schedule/{schedule.pk}/change/", {"name": "Mine", "slug": "mine", "timezone": "UTC"}
    )
    assert posted.status_code == 403
    assert client.post(f"/admin/oncall/schedule/{schedule.pk}/calendar-feed/", {"feed": "schedule"}).status_code == 403
    assert Schedule.objects.get().name == "Data platform"
    assert not CalendarToken.objects.exists()
    assert client.get("/admin/oncall/override/").status_code == 200
    assert client.get("/admin/oncall/override/add/").status_code == 403


def test_a_viewer_may_make_a_feed_of_their_own_shifts(schedule, viewer):
    created = client_for(viewer).post(f"/admin/oncall/schedule/{schedule.pk}/calendar-feed/", {"feed": "mine"})
    assert created.status_code == 200
    assert CalendarToken.objects.get().user == viewer


def test_the_override_list_writes_through_the_service(schedule, operator, people):
    start = timezone.now() + dt.timedelta(days=1)
    data = {
        "schedule": str(schedule.pk),
        "user": str(people[0].pk),
        "start_0": start.strftime("%Y-%m-%d"),
        "start_1": "10:00:00",
        "end_0": start.strftime("%Y-%m-%d"),
        "end_1": "09:00:00",
        "reason": "",
    }
    refused = client_for(operator).post("/admin/oncall/override/add/", data)
    assert refused.status_code == 200
    assert "end" in refused.context["adminform"].form.errors
    saved = client_for(operator).post("/admin/oncall/override/add/", {**data, "end_1": "11:00:00"})
    assert saved.status_code == 302
    assert Override.objects.get().created_by == operator


def test_the_fourteen_days_read_in_the_schedules_own_time_across_a_clock_change(operator, people):
    paris = schedule_save(user=operator, data={"name": "Paris", "slug": "paris", "timezone": "Europe/Paris"})
    data = {"name": "Primary", "handoff": "DAILY", "start_date": dt.date(2026, 3, 1)}
    rotation_save(user=operator, schedule=paris, data=data, members=people[:2])
    now = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)  # 00:30 on Sunday 29 March in Paris
    days = schedule_days(paris, now)
    assert [row["day"] for row in days[:2]] == ["Sun 29 Mar", "Mon 30 Mar"]
    first = days[0]["entries"]
    assert [(e["from"], e["to"], e["now"]) for e in first] == [("00:00", "09:00", True), ("09:00", "24:00", False)]
    # The clocks went forward that night: the day is 23 hours long, the hand-off still at 09:00.
    assert all([e["from"] for e in row["entries"]] == ["00:00", "09:00"] for row in days)
