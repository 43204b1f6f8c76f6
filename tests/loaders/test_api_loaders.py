"""The loader REST API: create, read, edit the draft, transitions, errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from loaders.models import Loader, LoaderVersion, VersionState
from tests.conftest import CONTRACT, version


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_it_creates_a_loader_as_a_draft(editor, team):
    response = api(editor).post(
        "/api/v1/loaders/",
        {"loader_code": "SALES-DAILY", "name": "Sales", "owner": team.slug, "tags": ["Sales", "daily"], **CONTRACT},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["active_version"] is None
    assert body["open_version"]["state"] == "DRAFT"
    assert body["open_version"]["schedule_timezone"] == "Europe/Berlin"
    assert body["tags"] == ["daily", "sales"]
    assert body["code_locked"] is False


def test_it_names_every_bad_field(editor, team):
    response = api(editor).post(
        "/api/v1/loaders/",
        {
            "loader_code": "sales daily",
            "name": "Sales",
            "owner": team.slug,
            "schedule_cron": "every night",
            "schedule_timezone": "Mars/Olympus",
            "expected_rows_min": 10,
            "expected_rows_max": 5,
            "bogus": 1,
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) >= {"schedule_cron", "schedule_timezone"}
    assert "five-field cron" in errors["schedule_cron"][0]
    assert not Loader.objects.exists()


def test_it_reports_business_validation_per_field(editor, team):
    response = api(editor).post(
        "/api/v1/loaders/",
        {
            "loader_code": "sales daily",
            "name": "Sales",
            "owner": "nobody",
            "expected_rows_min": 10,
            "expected_rows_max": 5,
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert "Unknown team 'nobody'" in errors["owner"][0]
    assert "upper-case" in errors["loader_code"][0]
    assert "minimum must not exceed" in " ".join(errors["non_field_errors"])
    assert not Loader.objects.exists()


def test_it_rejects_unknown_fields(editor, team):
    response = api(editor).post(
        "/api/v1/loaders/", {"loader_code": "A1", "name": "a", "owner": team.slug, "schedule": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"schedule": ["Unknown field."]}


def test_it_refuses_a_duplicate_code(editor, team, new_loader):
    new_loader("DUP")
    response = api(editor).post(
        "/api/v1/loaders/", {"loader_code": "DUP", "name": "x", "owner": team.slug}, format="json"
    )
    assert response.status_code == 400
    assert "already exists" in response.json()["loader_code"][0]


def test_detail_shows_active_and_pending_version(pending_loader, viewer):
    body = api(viewer).get("/api/v1/loaders/SALES-DAILY/").json()
    assert body["active_version"]["number"] == 1
    assert body["active_version"]["max_duration_minutes"] == 45
    assert body["open_version"]["number"] == 2
    assert body["open_version"]["state"] == "PENDING_APPROVAL"
    assert body["open_version"]["max_duration_minutes"] == 60
    assert body["has_pending_approval"] is True
    assert body["code_locked"] is True


def test_patch_edits_the_draft_started_from_active(active_loader, editor):
    response = api(editor).patch("/api/v1/loaders/SALES-DAILY/", {"grace_minutes": 5, "name": "Renamed"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["name"] == "Renamed"  # identity field: at once
    assert body["active_version"]["grace_minutes"] == 20  # live contract untouched
    assert body["open_version"]["grace_minutes"] == 5
    assert body["open_version"]["state"] == "DRAFT"
    second = api(editor).patch("/api/v1/loaders/SALES-DAILY/", {"grace_minutes": 7}, format="json").json()
    assert second["open_version"]["number"] == body["open_version"]["number"]  # same draft reused


def test_patch_on_a_pending_version_is_409(pending_loader, editor):
    response = api(editor).patch("/api/v1/loaders/SALES-DAILY/", {"grace_minutes": 1}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert "pending approval" in response.json()["detail"]


def test_patch_cannot_change_a_locked_code(active_loader, editor):
    response = api(editor).patch("/api/v1/loaders/SALES-DAILY/", {"loader_code": "SALES-NEW"}, format="json")
    assert response.status_code == 400
    assert "cannot change once a version has been active" in response.json()["loader_code"][0]
    assert Loader.objects.filter(loader_code="SALES-DAILY").exists()


def test_patch_can_change_the_code_before_first_approval(new_loader, editor):
    new_loader("TYPO-CODE")
    response = api(editor).patch("/api/v1/loaders/TYPO-CODE/", {"loader_code": "FIXED-CODE"}, format="json")
    assert response.status_code == 200
    assert response.json()["loader_code"] == "FIXED-CODE"


def test_full_workflow_over_the_api(new_loader, editor, approver):
    new_loader()
    assert api(editor).post("/api/v1/loaders/SALES-DAILY/submit/", {"comment": "go"}, format="json").status_code == 200
    response = api(approver).post("/api/v1/loaders/SALES-DAILY/approve/", {"version": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["active_version"]["decided_by"] == approver.username
    again = api(approver).post("/api/v1/loaders/SALES-DAILY/approve/", {}, format="json")
    assert again.status_code == 409
    assert "already approved by abby-approver" in again.json()["detail"]


def test_approve_names_the_reviewed_version(pending_loader, approver):
    response = api(approver).post("/api/v1/loaders/SALES-DAILY/approve/", {"version": 1}, format="json")
    assert response.status_code == 409
    assert version(pending_loader, 2).state == VersionState.PENDING_APPROVAL


def test_reject_needs_a_reason(pending_loader, approver):
    response = api(approver).post("/api/v1/loaders/SALES-DAILY/reject/", {}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    ok = api(approver).post("/api/v1/loaders/SALES-DAILY/reject/", {"reason": "too long"}, format="json")
    assert ok.status_code == 200
    assert version(pending_loader, 2).decision_comment == "too long"


def test_submit_with_nothing_open_is_409(active_loader, editor):
    response = api(editor).post("/api/v1/loaders/SALES-DAILY/submit/", {}, format="json")
    assert response.status_code == 409


def test_versions_lists_history_newest_first(pending_loader, viewer):
    body = api(viewer).get("/api/v1/loaders/SALES-DAILY/versions/").json()
    assert [(v["number"], v["state"]) for v in body["results"]] == [(2, "PENDING_APPROVAL"), (1, "ACTIVE")]


def test_list_filters(pending_loader, new_loader, viewer):
    new_loader("CRM-SYNC", tags=["crm"])
    client = api(viewer)
    codes = lambda q: [r["loader_code"] for r in client.get(f"/api/v1/loaders/{q}").json()["results"]]  # noqa: E731
    assert codes("") == ["CRM-SYNC", "SALES-DAILY"]
    assert codes("?state=pending") == ["SALES-DAILY"]
    assert codes("?state=no_active") == ["CRM-SYNC"]
    assert codes("?tag=crm") == ["CRM-SYNC"]
    assert codes("?search=sales") == ["SALES-DAILY"]
    assert codes("?owner=data-platform") == ["CRM-SYNC", "SALES-DAILY"]
    assert codes("?paused=true") == []


def test_secrets_are_write_only(new_loader, editor, viewer):
    marker = "S3CRET-MARKER-91273"
    new_loader(connection_password=marker)
    for user in (editor, viewer):
        for url in ("/api/v1/loaders/", "/api/v1/loaders/SALES-DAILY/", "/api/v1/loaders/SALES-DAILY/versions/"):
            content = api(user).get(url).content.decode()
            assert marker not in content
    detail = api(viewer).get("/api/v1/loaders/SALES-DAILY/").json()
    assert detail["open_version"]["connection_password_set"] is True
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT connection_password FROM loaders_loaderversion")
        stored = cursor.fetchone()[0]
    assert marker not in stored and stored.startswith("fernet:")
    assert LoaderVersion.objects.get().connection_password == marker


def test_unauthenticated_requests_are_refused(active_loader):
    assert api().get("/api/v1/loaders/").status_code == 401
    assert api().get("/api/schema/").status_code == 401


def test_token_auth_round_trip(make_user):
    from etl_monitor.roles import Role

    make_user(Role.VIEWER, username="tok")
    client = APIClient()
    bad = client.post("/api/v1/auth/token/", {"username": "tok", "password": "wrong"}, format="json")
    assert bad.status_code == 400
    token = client.post("/api/v1/auth/token/", {"username": "tok", "password": "pw-for-tests-123"}, format="json")
    assert token.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert client.get("/api/v1/loaders/").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/loaders/NOPE/", "/api/v1/loaders/NOPE/versions/"])
def test_unknown_loader_is_404(viewer, path):
    assert api(viewer).get(path).status_code == 404


def test_a_lower_case_code_gets_a_json_404(viewer):
    response = api(viewer).get("/api/v1/loaders/sales-daily/")
    assert response.status_code == 404
    assert response.json()["detail"]
