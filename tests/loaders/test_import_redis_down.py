"""A loader import while Redis is away: the upload is answered, never a 500, and a large file
that cannot be queued says so at once instead of waiting QUEUED for ever."""

from __future__ import annotations

import pytest

from loaders.importing import QUEUE_UNAVAILABLE
from loaders.models import ImportJob, Loader
from tests.loaders.test_import_export import api, good_rows, upload, xlsx


@pytest.mark.django_db(transaction=True)
def test_a_large_import_that_cannot_be_queued_fails_at_once_saying_why(broker_down, editor, team, settings):
    settings.LOADER_IMPORT_SYNC_ROWS = 2

    response = upload(api(editor), xlsx(good_rows(5)), dry_run=False)

    assert response.status_code == 202
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == ImportJob.Status.FAILED
    assert job.error == QUEUE_UNAVAILABLE
    assert bytes(job.content) == b""  # the rows may hold secrets
    status = api(editor).get(f"/api/v1/loaders/import/{job.pk}/")
    assert status.status_code == 200
    assert status.json()["error"] == QUEUE_UNAVAILABLE
    assert Loader.objects.filter(loader_code__startswith="LOADER-").count() == 0


def test_an_import_runs_and_reports_while_the_cache_is_down(cache_down, editor, team, settings):
    response = upload(api(editor), xlsx(good_rows(3)), dry_run=False)

    assert response.status_code in (200, 201, 202), response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == ImportJob.Status.DONE
    status = api(editor).get(f"/api/v1/loaders/import/{job.pk}/")
    assert status.status_code == 200
    assert status.json()["progress"]["rows_total"] == 3
