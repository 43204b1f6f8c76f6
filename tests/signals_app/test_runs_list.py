"""GET /api/v1/runs/: newest first, filtered by loader and status, cursor-paginated; Viewer and
above read every loader's runs, an ingest token its own loader's only, no role nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from etl_monitor.roles import Role
from signals_app.models import Run, RunStatus


@pytest.fixture
def runs(active_loader, new_loader):
    other = new_loader("OTHER-LOADER")
    start = timezone.now() - dt.timedelta(hours=10)
    made = []
    for i in range(7):
        made.append(
            Run.objects.create(
                loader=active_loader,
                status=RunStatus.FAILED if i % 3 == 0 else RunStatus.SUCCEEDED,
                started_at=start + dt.timedelta(hours=i),
            )
        )
    Run.objects.create(loader=other, status=RunStatus.FAILED, started_at=start - dt.timedelta(hours=1))
    return made


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_viewer_lists_runs_newest_first(viewer, runs):
    body = _api(viewer).get("/api/v1/runs/").json()
    assert [r["run_id"] for r in body["results"]][:7] == [str(r.run_id) for r in reversed(runs)]
    assert len(body["results"]) == 8


def test_it_filters_by_loader_and_status(viewer, runs):
    body = _api(viewer).get("/api/v1/runs/?loader=SALES-DAILY&status=FAILED").json()
    assert {r["loader_code"] for r in body["results"]} == {"SALES-DAILY"}
    assert {r["status"] for r in body["results"]} == {"FAILED"}
    assert len(body["results"]) == 3


def test_it_pages_with_a_cursor_without_gaps_or_repeats(viewer, runs):
    client = _api(viewer)
    page = client.get("/api/v1/runs/?loader=SALES-DAILY&page_size=3").json()
    seen = [r["run_id"] for r in page["results"]]
    assert page["previous"] is None and "cursor=" in page["next"]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["run_id"] for r in page["results"]]
    assert seen == [str(r.run_id) for r in reversed(runs)]


def test_an_unknown_status_is_a_400_naming_the_field(viewer, runs):
    response = _api(viewer).get("/api/v1/runs/?status=EXPLODED")
    assert response.status_code == 400
    assert "Unknown status" in response.json()["status"][0]


def test_a_time_without_a_zone_is_a_400_naming_the_field(viewer, runs):
    response = _api(viewer).get("/api/v1/runs/?from=2026-01-01T00:00:00")
    assert response.status_code == 400
    assert "from" in response.json()


def test_it_filters_by_start_time(viewer, runs):
    since = (runs[5].started_at).isoformat()
    body = _api(viewer).get("/api/v1/runs/", {"from": since}).json()
    assert [r["run_id"] for r in body["results"]] == [str(runs[6].run_id), str(runs[5].run_id)]


def test_a_user_without_a_role_is_refused(make_user, runs):
    response = _api(make_user()).get("/api/v1/runs/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Your role does not allow you to read runs."


def test_anonymous_is_refused(runs):
    assert APIClient().get("/api/v1/runs/").status_code in (401, 403)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN])
def test_every_role_reads_runs(make_user, role, runs):
    assert _api(make_user(role)).get("/api/v1/runs/").status_code == 200


def test_an_ingest_token_lists_only_its_loaders_runs(job, runs):
    body = job.get("/api/v1/runs/").json()
    assert {r["loader_code"] for r in body["results"]} == {"SALES-DAILY"}
    assert len(body["results"]) == 7
