"""Bulk import (all or nothing, drafts only, four-eyes) and export (masked, formula-safe)."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from etl_monitor.errors import PermissionRefused
from etl_monitor.models import FieldProtection
from etl_monitor.roles import Role
from loaders import importing, services
from loaders.models import ImportJob, Loader, LoaderVersion, VersionState
from loaders.spreadsheets import spreadsheet_read, spreadsheet_write

HEADERS = [
    "loader_code",
    "name",
    "owner",
    "tags",
    "schedule_cron",
    "schedule_timezone",
    "expected_rows_min",
    "expected_rows_max",
    "connection_password",
]


def xlsx(rows: list[list], headers: list[str] = HEADERS) -> bytes:
    return spreadsheet_write(headers=headers, rows=rows, file_format="xlsx")


def good_rows(n: int = 3) -> list[list]:
    return [
        [
            f"LOADER-{i:03d}",
            f"Loader {i}",
            "data-platform",
            "sales, daily",
            "30 2 * * *",
            "Europe/Berlin",
            100,
            1000,
            f"pw-{i}",
        ]
        for i in range(n)
    ]


def run(user, content: bytes, *, dry_run: bool, submit: bool = False, filename: str = "loaders.xlsx"):
    sheet = spreadsheet_read(content=content, filename=filename, max_bytes=10_000_000, max_rows=50_000)
    return importing.loaders_import(user=user, sheet=sheet, dry_run=dry_run, submit=submit, source=filename)


def upload(client: APIClient, content: bytes, filename: str = "loaders.xlsx", **params):
    data = {"file": io.BytesIO(content), **{k: str(v).lower() for k, v in params.items()}}
    data["file"].name = filename
    return client.post("/api/v1/loaders/import/", data, format="multipart")


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_good_file_creates_drafts_with_history(editor, team):
    report = run(editor, xlsx(good_rows()), dry_run=False)
    assert report.ok and report.applied
    assert (report.new, report.changed, report.unchanged) == (3, 0, 0)
    loader = Loader.objects.get(loader_code="LOADER-001")
    version = loader.open_version
    assert (version.state, version.number, version.created_by) == (VersionState.DRAFT, 1, editor)
    assert version.connection_password == "pw-1"
    assert sorted(t.name for t in loader.tags.all()) == ["daily", "sales"]
    assert loader.active_version is None
    created = loader.history.get()
    assert created.history_user == editor
    assert sorted(link.tag.name for link in created.tags.all()) == ["daily", "sales"]  # as a save records them
    assert version.history.get().history_change_reason == "Imported from loaders.xlsx"


def test_submit_sends_them_for_approval_and_the_importer_cannot_approve(maker_checker, team, approver):
    report = run(maker_checker, xlsx(good_rows(2)), dry_run=False, submit=True)
    assert report.submitted == 2
    version = Loader.objects.get(loader_code="LOADER-000").open_version
    assert version.state == VersionState.PENDING_APPROVAL
    with pytest.raises(PermissionRefused, match="You submitted this version"):
        services.loader_version_approve(user=maker_checker, version=version)
    assert services.loader_version_approve(user=approver, version=version).state == VersionState.ACTIVE


def test_a_dry_run_writes_nothing(editor, team):
    report = run(editor, xlsx(good_rows()), dry_run=True)
    assert report.ok and not report.applied and report.new == 3
    assert not Loader.objects.exists()


def test_bad_rows_write_nothing_and_each_is_named(editor, team, active_loader):
    FieldProtection.objects.create(model_label="loaders.loaderversion", field_name="default_severity", level="LOCKED")
    headers = [*HEADERS, "default_severity"]
    rows = [
        ["GOOD-ONE", "fine", "data-platform", "", "0 * * * *", "UTC", 1, 2, "", "MEDIUM"],
        ["bad code", "x", "data-platform", "", "", "UTC", "", "", "", "MEDIUM"],
        ["CRON-BAD", "x", "data-platform", "", "99 * * * *", "UTC", "", "", "", "MEDIUM"],
        ["TZ-BAD", "x", "data-platform", "", "", "Mars/Base", "", "", "", "MEDIUM"],
        ["RANGE-BAD", "x", "data-platform", "", "", "UTC", 500, 5, "", "MEDIUM"],
        ["GOOD-ONE", "again", "data-platform", "", "", "UTC", "", "", "", "MEDIUM"],
        ["OWNER-BAD", "x", "nobody", "", "", "UTC", "", "", "", "MEDIUM"],
        ["SALES-DAILY", "Sales", "data-platform", "", "30 2 * * *", "Europe/Berlin", 100, 1000, "", "LOW"],
        ["ROWS-BAD", "x", "data-platform", "", "", "UTC", "many", "", "", "MEDIUM"],
    ]
    report = run(editor, xlsx(rows, headers), dry_run=False)
    assert not report.ok and not report.applied
    errors = {(r.row, column): message for r in report.rows for column, message in r.errors}
    assert "upper-case" in errors[(3, "loader_code")]
    assert "cron" in errors[(4, "schedule_cron")]
    assert "time zone" in errors[(5, "schedule_timezone")]
    assert "minimum must not exceed the maximum" in errors[(6, "loader_code")]  # a rule across fields
    assert "Duplicate loader_code 'GOOD-ONE' (also in row 2)" in errors[(7, "loader_code")]
    assert "Unknown team 'nobody'" in errors[(8, "owner")]
    assert "locked" in errors[(9, "default_severity")]
    assert (10, "expected_rows_min") in errors
    assert report.error_rows == 8
    assert not Loader.objects.filter(loader_code="GOOD-ONE").exists()
    assert Loader.objects.count() == 1


def test_missing_and_unknown_columns_are_file_errors(editor, team):
    report = run(editor, xlsx([["A1", "a"]], ["loader_code", "name"]), dry_run=False)
    assert report.file_errors == ["Missing required column(s): owner."]
    report = run(
        editor, xlsx([["A1", "a", "data-platform", 1]], ["loader_code", "name", "owner", "colour"]), dry_run=True
    )
    assert "Unknown column(s): colour." in report.file_errors[0]


def test_reimporting_the_same_file_changes_nothing(editor, team):
    content = xlsx(good_rows())
    run(editor, content, dry_run=False)
    before = (LoaderVersion.history.count(), Loader.history.count(), LoaderVersion.objects.count())
    report = run(editor, content, dry_run=False)
    assert (report.new, report.changed, report.unchanged) == (0, 0, 3)
    assert (LoaderVersion.history.count(), Loader.history.count(), LoaderVersion.objects.count()) == before


def test_changes_to_an_active_loader_become_a_draft(editor, active_loader):
    rows = [["SALES-DAILY", "SALES-DAILY loader", "data-platform", "", "0 3 * * *", "Europe/Berlin", 100, 1000, ""]]
    preview = run(editor, xlsx(rows), dry_run=True)
    assert preview.rows[0].status == "changed"
    assert ("schedule_cron", "30 2 * * *", "0 3 * * *") in preview.rows[0].changes
    run(editor, xlsx(rows), dry_run=False)
    loader = Loader.objects.get(loader_code="SALES-DAILY")
    assert loader.active_version.schedule_cron == "30 2 * * *"
    assert loader.open_version.schedule_cron == "0 3 * * *"
    assert loader.open_version.state == VersionState.DRAFT


def test_a_pending_loader_cannot_take_imported_changes(editor, pending_loader):
    rows = [["SALES-DAILY", "SALES-DAILY loader", "data-platform", "", "0 4 * * *", "Europe/Berlin", 100, 1000, ""]]
    report = run(editor, xlsx(rows), dry_run=False)
    assert "pending approval" in report.rows[0].errors[0][1]


def test_roles_without_edit_rights_cannot_import(approver, team):
    with pytest.raises(PermissionRefused):
        run(approver, xlsx(good_rows()), dry_run=True)


def test_the_preview_masks_secrets(editor, active_loader):
    rows = [
        [
            "SALES-DAILY",
            "SALES-DAILY loader",
            "data-platform",
            "",
            "30 2 * * *",
            "Europe/Berlin",
            100,
            1000,
            "NEW-SECRET-MARKER-5521",
        ]
    ]
    report = run(editor, xlsx(rows), dry_run=True)
    assert "NEW-SECRET-MARKER-5521" not in str(report.as_dict())
    assert ("connection_password", "••••••", "•••••• (changed)") in report.rows[0].changes


def test_the_api_previews_then_imports(editor, team):
    client = api(editor)
    preview = upload(client, xlsx(good_rows()), dry_run=True)
    assert preview.status_code == 200, preview.json()
    assert preview.json()["report"]["new"] == 3
    assert not Loader.objects.exists()
    done = upload(client, xlsx(good_rows()), dry_run=False, submit=True)
    assert done.status_code == 201
    assert done.json()["report"]["submitted"] == 3
    assert Loader.objects.count() == 3


def test_the_api_answers_400_with_every_bad_row(editor, team):
    rows = [*good_rows(1), ["bad", "x", "data-platform", "", "", "UTC", "", "", ""]]
    response = upload(api(editor), xlsx(rows), dry_run=False)
    assert response.status_code == 400
    assert response.json()["report"]["errors"] == [
        {"row": 3, "column": "loader_code", "message": response.json()["report"]["errors"][0]["message"]}
    ]
    assert not Loader.objects.exists()


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"", "x.xlsx", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "x.xlsx", "not"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "x.xlsx", "password-protected"),
    ],
)
def test_bad_files_get_a_clear_400(editor, team, content, filename, message):
    response = upload(api(editor), content, filename)
    assert response.status_code == 400
    assert message in response.json()["file"][0]


def test_large_files_run_in_the_background_with_progress(editor, team, settings, django_capture_on_commit_callbacks):
    settings.LOADER_IMPORT_SYNC_ROWS = 2
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api(editor), xlsx(good_rows(5)), dry_run=False)
    assert response.status_code == 202
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == ImportJob.Status.DONE  # the eager task ran on commit
    status = api(editor).get(f"/api/v1/loaders/import/{job.pk}/").json()
    assert status["progress"] == {"rows_done": 5, "rows_total": 5}
    assert status["report"]["new"] == 5
    assert job.content in (b"", memoryview(b"")) or bytes(job.content) == b""
    assert Loader.objects.count() == 5


def test_someone_else_cannot_read_my_import(editor, editor2, team):
    response = upload(api(editor), xlsx(good_rows(1)), dry_run=True)
    assert api(editor2).get(f"/api/v1/loaders/import/{response.json()['id']}/").status_code == 404


def test_the_stored_file_is_encrypted(editor, team):
    upload(api(editor), xlsx(good_rows(1)), dry_run=True)
    stored = bytes(ImportJob.objects.get().content)
    assert b"pw-0" not in stored and not stored.startswith(b"PK")


def test_the_template_has_headers_an_example_and_notes(viewer):
    response = api(viewer).get("/api/v1/loaders/import/template/")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert book.sheetnames[:2] == ["loaders", "notes"]
    rows = list(book["loaders"].values)
    assert list(rows[0][:3]) == ["loader_code", "name", "owner"]
    assert rows[1][0] == "EXAMPLE-DELETE-ME"
    notes = {r[0]: r[1] for r in book["notes"].values}
    assert "cron" in notes["schedule_cron"]


@pytest.mark.parametrize("file_format", ["xlsx", "csv"])
def test_export_masks_protection_omits_secrets_and_neutralises_formulas(make_user, active_loader, file_format):
    from loaders.models import LoaderVersion

    LoaderVersion.objects.filter(loader=active_loader).update(description='=HYPERLINK("http://evil")')
    version = active_loader.versions.get()
    version.connection_password = "EXPORT-SECRET-991"
    version.save()
    rule = FieldProtection.objects.create(model_label="loaders.loaderversion", field_name="target", level="MASKED")
    rule.exempt_groups.set(Group.objects.filter(name=Role.ADMIN))
    viewer_rows = export_rows(api(make_user(Role.VIEWER)), file_format)
    assert "EXPORT-SECRET-991" not in str(viewer_rows)
    row = viewer_rows[0]
    assert "connection_password" not in row
    assert row["target"] == "••••••"
    assert row["description"].startswith("'=")
    assert str(row["expected_rows_min"]) == "100"
    admin_row = export_rows(api(make_user(Role.ADMIN)), file_format)[0]
    assert admin_row["target"] == "dwh.sales"  # the exempt role sees the value
    assert "EXPORT-SECRET-991" not in str(admin_row)


def export_rows(client: APIClient, file_format: str) -> list[dict]:
    response = client.get(f"/api/v1/loaders/export/?format={file_format}")
    assert response.status_code == 200
    assert "loaders-" in response["Content-Disposition"]
    if file_format == "csv":
        return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    values = list(openpyxl.load_workbook(io.BytesIO(response.content))["loaders"].values)
    return [dict(zip(values[0], r, strict=True)) for r in values[1:]]


def test_an_export_reimports_as_unchanged(editor, active_loader):
    content = api(editor).get("/api/v1/loaders/export/?format=xlsx").content
    report = run(editor, content, dry_run=True)
    assert report.ok, report.as_dict()
    assert (report.unchanged, report.changed) == (1, 0)


def test_an_export_with_a_draft_reimports_as_unchanged(editor, active_loader):
    services.loader_edit(user=editor, loader=active_loader, data={"grace_minutes": 3})
    content = api(editor).get("/api/v1/loaders/export/?format=xlsx").content
    report = run(editor, content, dry_run=True)
    assert report.ok and report.unchanged == 1


def test_the_api_confirms_a_preview_without_reading_the_file_again(editor, team, editor2):
    preview = upload(api(editor), xlsx(good_rows(2)), dry_run=True).json()
    assert api(editor2).post(f"/api/v1/loaders/import/{preview['id']}/confirm/").status_code == 404
    confirmed = api(editor).post(f"/api/v1/loaders/import/{preview['id']}/confirm/")
    assert confirmed.status_code == 201, confirmed.json()
    assert confirmed.json()["report"]["new"] == 2 and Loader.objects.count() == 2
    again = api(editor).post(f"/api/v1/loaders/import/{preview['id']}/confirm/")
    assert again.status_code == 409  # a preview is used once


def test_a_job_that_cannot_run_ends_failed_not_stuck(editor, team):
    job = ImportJob.objects.create(created_by=editor, filename="x.xlsx", content=b"not-encrypted", dry_run=False)
    importing.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and "unexpectedly" in job.error
    assert bytes(job.content) == b""


def test_old_unconfirmed_previews_lose_their_rows(editor, team):
    import datetime as dt

    preview = upload(api(editor), xlsx(good_rows(1)), dry_run=True).json()
    ImportJob.objects.filter(pk=preview["id"]).update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert importing.import_jobs_cleanup() == 1
    job = ImportJob.objects.get(pk=preview["id"])
    assert bytes(job.content) == b"" and job.report["new"] == 1


def test_submit_never_submits_a_draft_the_import_did_not_change(editor, editor2, active_loader):
    services.loader_edit(user=editor2, loader=active_loader, data={"grace_minutes": 3})  # someone's draft
    rows = [["SALES-DAILY", "Renamed", "data-platform", "", "30 2 * * *", "Europe/Berlin", 100, 1000, ""]]
    headers = HEADERS
    content = xlsx(rows, headers)
    sheet = spreadsheet_read(content=content, filename="x.xlsx", max_bytes=10**7, max_rows=10)
    # the row changes the name (identity) and restates the draft's contract, so nothing to submit
    report = importing.loaders_import(user=editor, sheet=sheet, dry_run=False, submit=True)
    assert report.ok and report.submitted == 0
    assert Loader.objects.get().open_version.state == VersionState.DRAFT


def test_a_role_without_tag_rights_cannot_create_tags_by_import(make_user, team):
    from django.contrib.auth.models import Permission

    user = make_user()
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_loader", "change_loaderversion", "view_loader"])
    )
    user = type(user).objects.get(pk=user.pk)
    report = run(user, xlsx(good_rows(1)), dry_run=True)
    assert "your role cannot create tags" in report.rows[0].errors[0][1]


def test_rotate_field_keys_reencrypts_current_and_history_rows(settings, editor, team):
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command
    from django.db import connection

    from etl_monitor.crypto import KEY_CHECK_PLAINTEXT
    from etl_monitor.models import FieldKeyCheck

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [old]
    FieldKeyCheck.objects.update(token=KEY_CHECK_PLAINTEXT)  # a site set up with `old` (else rotation refuses)
    run(editor, xlsx(good_rows(1)), dry_run=False)
    settings.FIELD_ENCRYPTION_KEY = [new, old]
    out = StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "re-encrypted" in out.getvalue()
    settings.FIELD_ENCRYPTION_KEY = [new]  # the old key is gone
    assert LoaderVersion.objects.get().connection_password == "pw-0"
    assert LoaderVersion.history.get().connection_password == "pw-0"
    with connection.cursor() as cursor:
        cursor.execute("SELECT connection_password FROM loaders_historicalloaderversion")
        assert cursor.fetchone()[0].startswith("fernet:")


def test_a_loader_with_only_a_rejected_version_exports_and_reimports_unchanged(editor, approver, new_loader):
    loader = new_loader("REJECTED-ONLY")
    services.loader_version_submit(user=editor, version=loader.open_version)
    services.loader_version_reject(user=approver, version=Loader.objects.get(pk=loader.pk).open_version, reason="no")
    content = api(editor).get("/api/v1/loaders/export/?format=xlsx").content
    report = run(editor, content, dry_run=True)
    assert report.ok and report.unchanged == 1


def test_a_queued_real_import_is_not_cleaned_up(editor, team, settings, django_capture_on_commit_callbacks):
    import datetime as dt

    settings.LOADER_IMPORT_SYNC_ROWS = 0
    response = upload(api(editor), xlsx(good_rows(1)), dry_run=False)  # queued, on_commit not run
    ImportJob.objects.filter(pk=response.json()["id"]).update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert importing.import_jobs_cleanup() == 0
    importing.import_job_run(job_id=response.json()["id"])
    assert ImportJob.objects.get(pk=response.json()["id"]).status == ImportJob.Status.DONE
    assert Loader.objects.count() == 1


def test_a_delivered_twice_import_runs_once(editor, team, settings):
    settings.LOADER_IMPORT_SYNC_ROWS = 0
    response = upload(api(editor), xlsx(good_rows(2)), dry_run=False)
    importing.import_job_run(job_id=response.json()["id"])
    importing.import_job_run(job_id=response.json()["id"])
    assert Loader.objects.count() == 2
    assert ImportJob.objects.get(pk=response.json()["id"]).status == ImportJob.Status.DONE
