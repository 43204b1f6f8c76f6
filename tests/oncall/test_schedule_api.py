"""The schedules API: list and detail with layers, who is on call (days 1..60), overrides written
by Operators and refused to Viewers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from oncall.models import Override
from oncall.services import override_save, rotation_save, schedule_save


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def people(make_user):
    return [make_user(username=name) for name in ("alice", "bob")]


@pytest.fixture
def schedule(operator, people):
    made = schedule_save(user=operator, data={"name": "Data platform", "slug": "data-platform", "timezone": "UTC"})
    start_date = timezone.now().date() - dt.timedelta(days=10)
    data = {"name": "Primary", "handoff": "DAILY", "handoff_time": dt.time(9), "start_date": start_date}
    rotation_save(user=operator, schedule=made, data=data, members=people)
    return made


def test_a_viewer_lists_schedules_and_reads_one_with_its_layers(schedule, viewer):
    listed = api(viewer).get("/api/v1/schedules/")
    assert listed.status_code == 200
    assert [s["slug"] for s in listed.json()["results"]] == ["data-platform"]
    detail = api(viewer).get("/api/v1/schedules/data-platform/")
    assert detail.status_code == 200
    rotation = detail.json()["rotations"][0]
    assert rotation["members"] == ["alice", "bob"]
    assert rotation["handoff"] == "DAILY" and rotation["handoff_time"] == "09:00:00"
    assert api(viewer).get("/api/v1/schedules/nope/").status_code == 404


def test_anonymous_and_roleless_people_read_nothing(schedule, make_user):
    assert api().get("/api/v1/schedules/").status_code in (401, 403)
    assert api(make_user()).get("/api/v1/schedules/data-platform/oncall/").status_code == 403


def test_oncall_says_who_now_and_the_shifts_of_the_days_asked(schedule, viewer):
    response = api(viewer).get("/api/v1/schedules/data-platform/oncall/?days=3")
    assert response.status_code == 200
    body = response.json()
    assert len(body["oncall"]) == 1 and body["oncall"][0] in ("alice", "bob")
    assert body["shifts"][0]["user"] == body["oncall"][0]
    assert 3 <= len(body["shifts"]) <= 4
    assert {s["source"] for s in body["shifts"]} == {"rotation"}
    default = api(viewer).get("/api/v1/schedules/data-platform/oncall/").json()
    assert 14 <= len(default["shifts"]) <= 15


@pytest.mark.parametrize("days", ["0", "61", "two", "-1"])
def test_a_bad_days_value_is_a_400_naming_days(schedule, viewer, days):
    response = api(viewer).get(f"/api/v1/schedules/data-platform/oncall/?days={days}")
    assert response.status_code == 400
    assert "days" in response.json()


def test_an_operator_adds_an_override_and_it_shows_in_oncall(schedule, operator, people):
    now = timezone.now()
    body = {
        "user": "bob",
        "start": (now - dt.timedelta(minutes=5)).isoformat(),
        "end": (now + dt.timedelta(hours=1)).isoformat(),
        "reason": "swap",
    }
    created = api(operator).post("/api/v1/schedules/data-platform/overrides/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["user"] == "bob" and created.json()["created_by"] == operator.username
    oncall = api(operator).get("/api/v1/schedules/data-platform/oncall/?days=1").json()
    assert oncall["oncall"] == ["bob"]
    assert oncall["shifts"][0]["source"] == "override" and oncall["shifts"][0]["override"] == created.json()["id"]


def test_override_errors_name_the_field(schedule, operator):
    now = timezone.now()
    body = {"user": "alice", "start": now.isoformat(), "end": now.isoformat()}
    response = api(operator).post("/api/v1/schedules/data-platform/overrides/", body, format="json")
    assert response.status_code == 400 and "end" in response.json()
    unknown = api(operator).post("/api/v1/schedules/data-platform/overrides/", {**body, "who": "x"}, format="json")
    assert unknown.status_code == 400 and "who" in unknown.json()
    nobody = api(operator).post("/api/v1/schedules/data-platform/overrides/", {**body, "user": "zed"}, format="json")
    assert nobody.status_code == 400 and "user" in nobody.json()
    assert not Override.objects.exists()


def test_a_viewer_may_not_add_or_remove_overrides(schedule, viewer, operator, people):
    now = timezone.now()
    body = {"user": "alice", "start": now.isoformat(), "end": (now + dt.timedelta(hours=1)).isoformat()}
    refused = api(viewer).post("/api/v1/schedules/data-platform/overrides/", body, format="json")
    assert refused.status_code == 403
    assert "overrides" in refused.json()["detail"]
    override = override_save(
        user=operator, schedule=schedule, data={"user": people[0], "start": now, "end": now + dt.timedelta(hours=1)}
    )
    url = f"/api/v1/schedules/data-platform/overrides/{override.pk}/"
    assert api(viewer).delete(url).status_code == 403
    assert api(operator).delete(url).status_code == 204
    assert api(operator).delete(url).status_code == 404
    assert not Override.objects.exists()


def test_an_override_is_removed_only_through_its_own_schedule(schedule, operator, people):
    other = schedule_save(user=operator, data={"name": "Other", "slug": "other"})
    now = timezone.now()
    override = override_save(
        user=operator, schedule=other, data={"user": people[0], "start": now, "end": now + dt.timedelta(hours=1)}
    )
    assert api(operator).delete(f"/api/v1/schedules/data-platform/overrides/{override.pk}/").status_code == 404


def test_the_schema_documents_the_schedules_endpoints(admin_user):
    schema = api(admin_user).get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/schedules/{slug}/oncall/" in paths
    assert "delete" in paths["/api/v1/schedules/{slug}/overrides/{override_id}/"]
