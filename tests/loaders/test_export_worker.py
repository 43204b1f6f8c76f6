"""A large export written by a real Celery worker process, as in production: the admin queues
the job, the worker writes the file, the requester downloads it."""

from __future__ import annotations

import io
import os
import time

import openpyxl
import pytest

from etl_monitor.celery import app
from loaders.models import ExportJob
from tests.platform.test_celery_worker import purge_broker
from tests.processes import celery_worker, postgres_test_url, process_start, process_stop


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_large_export_is_written_by_a_real_worker(
    require_postgres, client, editor, new_loader, monkeypatch, settings, tmp_path
):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    settings.LOADER_EXPORT_SYNC_ROWS = 1
    for code in ("C-THREE", "A-ONE", "B-TWO"):
        new_loader(code)
    url = postgres_test_url()
    purge_broker()
    worker = process_start(celery_worker(), env={**os.environ, "DATABASE_URL": url}, log=tmp_path / "worker.log")
    try:
        client.force_login(editor)
        action = {"action": "export_xlsx", "select_across": "1", "index": "0", "_selected_action": [0]}
        response = client.post("/admin/loaders/loader/", action)  # committed: the task is on the broker
        assert response.status_code == 302
        job = ExportJob.objects.get()
        deadline = time.monotonic() + 60  # generous for a cold worker
        while time.monotonic() < deadline and job.status in (ExportJob.Status.QUEUED, ExportJob.Status.RUNNING):
            time.sleep(0.2)
            job.refresh_from_db()
    finally:
        process_stop(worker)

    assert job.status == ExportJob.Status.DONE, (job.status, job.error, (tmp_path / "worker.log").read_text()[-3000:])
    download = client.get(f"/admin/loaders/loader/export/{job.pk}/download/")
    assert download.status_code == 200
    values = list(openpyxl.load_workbook(io.BytesIO(download.content))["loaders"].values)
    assert [row[0] for row in values[1:]] == ["A-ONE", "B-TWO", "C-THREE"]
