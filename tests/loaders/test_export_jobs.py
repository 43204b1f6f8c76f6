"""Large exports from the admin: a background job with progress whose file only its requester
(and Admins) may download, deleted after its retention, never holding a secret."""

from __future__ import annotations

import csv
import datetime as dt
import io

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from etl_monitor.errors import PermissionRefused
from loaders import exporting
from loaders.models import ExportJob, Loader, LoaderVersion, Team
from loaders.tasks import loader_import_cleanup

CHANGELIST = "/admin/loaders/loader/"
SECRET = "EXPORT-JOB-SECRET-4471"


@pytest.fixture
def loaders(new_loader, active_loader):
    """SALES-DAILY (active, with a stored password) and two drafts, one of another team."""
    version = active_loader.versions.get()
    version.connection_password = SECRET
    version.save()
    other = Team.objects.create(slug="finance", name="Finance")
    return [active_loader, new_loader("ORDERS-HOURLY"), new_loader("LEDGER-DAILY", owner=other.slug)]


@pytest.fixture
def in_background(settings):
    settings.LOADER_EXPORT_SYNC_ROWS = 1


def export_all(client, file_format: str = "xlsx"):
    """The bulk action on every loader ("Select all")."""
    return client.post(
        CHANGELIST, {"action": f"export_{file_format}", "select_across": "1", "index": "0", "_selected_action": [0]}
    )


def job_of(response) -> ExportJob:
    assert response.status_code == 302, response.content[:500]
    job_id = response["Location"].rstrip("/").split("/")[-1]
    assert response["Location"] == f"{CHANGELIST}export/{job_id}/"
    return ExportJob.objects.get(pk=job_id)


def sheet_rows(content: bytes) -> list[dict]:
    values = list(openpyxl.load_workbook(io.BytesIO(content))["loaders"].values)
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def page(client, job: ExportJob) -> str:
    response = client.get(f"{CHANGELIST}export/{job.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_large_export_runs_in_the_background_and_its_requester_downloads_the_file(
    client, editor, loaders, in_background, django_capture_on_commit_callbacks
):
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):  # the eager task runs on commit
        job = job_of(export_all(client))

    job.refresh_from_db()
    assert (job.status, job.rows_total, job.created_by) == (ExportJob.Status.DONE, 3, editor)
    assert "Download the file" in page(client, job)
    download = client.get(f"{CHANGELIST}export/{job.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Type"].startswith("application/vnd.openxmlformats")
    assert 'filename="loaders-' in download["Content-Disposition"]
    rows = sheet_rows(download.content)
    assert [row["loader_code"] for row in rows] == ["LEDGER-DAILY", "ORDERS-HOURLY", "SALES-DAILY"]
    assert rows[2]["state"] == "ACTIVE" and rows[0]["state"] == "DRAFT"


def test_the_job_file_holds_no_secret(client, editor, loaders, in_background, django_capture_on_commit_callbacks):
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_of(export_all(client, "csv"))

    content = client.get(f"{CHANGELIST}export/{job.pk}/download/").content
    assert LoaderVersion.objects.get(loader=loaders[0]).connection_password == SECRET
    assert b"SALES-DAILY" in content
    assert SECRET.encode() not in content and b"connection_password" not in content
    assert SECRET.encode() not in bytes(ExportJob.objects.get().content)


def test_a_small_export_is_still_the_file_at_once(client, viewer, loaders):
    client.force_login(viewer)
    response = export_all(client, "csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [row["loader_code"] for row in rows] == ["LEDGER-DAILY", "ORDERS-HOURLY", "SALES-DAILY"]
    assert not ExportJob.objects.exists()


def test_the_list_button_exports_the_loaders_its_filter_shows(
    client, viewer, loaders, in_background, django_capture_on_commit_callbacks
):
    client.force_login(viewer)
    listing = client.get(f"{CHANGELIST}?q=DAILY").content.decode()
    assert f'href="{CHANGELIST}export/?q=DAILY"' in listing
    owner = Team.objects.get(slug="data-platform").pk

    form = client.get(f"{CHANGELIST}export/?owner__id__exact={owner}").content.decode()
    assert "Export <strong>2</strong> loaders" in form and "Data Platform" in form
    assert "in the background" in form
    with django_capture_on_commit_callbacks(execute=True):
        job = job_of(client.post(f"{CHANGELIST}export/?owner__id__exact={owner}", {"format": "xlsx"}))

    content = client.get(f"{CHANGELIST}export/{job.pk}/download/").content
    assert [row["loader_code"] for row in sheet_rows(content)] == ["ORDERS-HOURLY", "SALES-DAILY"]


def test_the_list_button_gives_a_few_loaders_at_once(client, viewer, loaders):
    client.force_login(viewer)
    response = client.post(f"{CHANGELIST}export/?q=ORDERS", {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    assert "ORDERS-HOURLY" in text and "SALES-DAILY" not in text


def test_the_page_shows_progress_until_the_worker_is_done(client, editor, loaders, in_background):
    client.force_login(editor)
    job = job_of(export_all(client))  # queued: the on-commit publication never ran

    html = page(client, job)
    assert "Queued — 0 of 3 loaders read (0%)" in html
    assert 'http-equiv="refresh"' in html
    assert client.get(f"{CHANGELIST}export/{job.pk}/download/").status_code == 302  # nothing to download yet

    exporting.export_job_run(job_id=job.pk)
    html = page(client, job)
    assert "Download the file" in html and 'http-equiv="refresh"' not in html


def test_another_user_can_neither_see_nor_download_the_file(
    client, editor, editor2, admin_user, loaders, in_background, django_capture_on_commit_callbacks
):
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_of(export_all(client))

    client.force_login(editor2)
    assert client.get(f"{CHANGELIST}export/{job.pk}/").status_code == 404
    assert client.get(f"{CHANGELIST}export/{job.pk}/download/").status_code == 404
    client.force_login(admin_user)
    assert client.get(f"{CHANGELIST}export/{job.pk}/download/").status_code == 200


def test_a_user_without_the_view_permission_cannot_export(client, make_user, editor, loaders):
    nobody = make_user()  # staff, no role
    client.force_login(nobody)
    assert client.get(f"{CHANGELIST}export/").status_code == 403
    assert client.post(f"{CHANGELIST}export/", {"format": "xlsx"}).status_code == 403
    with pytest.raises(PermissionRefused, match=r"Your role does not allow you to export loaders\."):
        exporting.export_job_create(user=nobody, loaders=Loader.objects.all(), file_format="xlsx")
    assert not ExportJob.objects.exists()


def test_a_role_taken_away_before_the_job_runs_fails_it_and_the_page_says_why(
    client, make_user, loaders, in_background
):
    exporter = make_user(username="pat-exporter")
    exporter.user_permissions.set(Permission.objects.filter(codename="view_loader"))
    client.force_login(exporter)
    job = job_of(export_all(client))
    exporter.user_permissions.clear()

    exporting.export_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED and bytes(job.content) == b""
    assert "Your role does not allow you to export loaders." in page(client, job)


def test_a_job_that_cannot_run_ends_failed_and_the_page_says_so(client, editor, loaders):
    job = ExportJob.objects.create(created_by=editor, loader_ids=["not-a-loader-id"], rows_total=1)

    exporting.export_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.error) == (ExportJob.Status.FAILED, exporting.EXPORT_FAILED)
    client.force_login(editor)
    assert "The export failed unexpectedly" in page(client, job)


def test_a_job_delivered_twice_is_written_once(editor, loaders):
    job = exporting.export_job_create(user=editor, loaders=Loader.objects.all(), file_format="csv")
    exporting.export_job_run(job_id=job.pk)
    first = ExportJob.objects.get(pk=job.pk)

    exporting.export_job_run(job_id=job.pk)

    again = ExportJob.objects.get(pk=job.pk)
    assert again.status == ExportJob.Status.DONE and again.finished_at == first.finished_at
    assert again.loader_ids == []  # the choice is not kept once the file is written


def test_the_hourly_cleanup_deletes_the_file_after_its_retention(
    client, editor, loaders, settings, in_background, django_capture_on_commit_callbacks
):
    settings.LOADER_EXPORT_KEEP_HOURS = 24
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        old, recent = job_of(export_all(client)), job_of(export_all(client))
    ExportJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - dt.timedelta(hours=25))

    assert loader_import_cleanup() == 1

    assert bytes(ExportJob.objects.get(pk=old.pk).content) == b""
    assert bytes(ExportJob.objects.get(pk=recent.pk).content) != b""
    assert "has been deleted" in page(client, old)
    gone = client.get(f"{CHANGELIST}export/{old.pk}/download/", follow=True)
    assert "no file to download" in gone.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_large_export_that_cannot_be_queued_fails_at_once_saying_why(
    client, broker_down, editor, loaders, in_background
):
    client.force_login(editor)
    job = job_of(export_all(client))

    job.refresh_from_db()
    assert (job.status, job.error) == (ExportJob.Status.FAILED, exporting.QUEUE_UNAVAILABLE)
    assert "background queue (Redis) was unavailable" in page(client, job)


def test_admins_see_the_jobs_of_others_and_people_only_their_own(editor, editor2, admin_user, loaders):
    job = exporting.export_job_create(user=editor, loaders=Loader.objects.all(), file_format="xlsx")
    assert list(exporting.export_jobs_visible(user=editor)) == [job]
    assert list(exporting.export_jobs_visible(user=editor2)) == []
    assert list(exporting.export_jobs_visible(user=admin_user)) == [job]
