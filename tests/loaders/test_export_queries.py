"""An export costs the same number of queries for 3 loaders as for 9, on every path: the admin's
action and list button, the API, and the background job (50,000 loaders once took minutes
because every contract field of every version was read by a query of its own)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from loaders import exporting
from loaders.models import Loader

CHANGELIST = "/admin/loaders/loader/"


def admin_action(client, editor):
    action = {"action": "export_xlsx", "select_across": "1", "index": "0", "_selected_action": [0]}
    assert client.post(CHANGELIST, action).status_code == 200


def admin_button(client, editor):
    assert client.post(f"{CHANGELIST}export/", {"format": "csv"}).status_code == 200


def api(client, editor):
    api_client = APIClient()
    api_client.force_authenticate(editor)
    assert api_client.get("/api/v1/loaders/export/?format=xlsx").status_code == 200


def job(client, editor):
    created = exporting.export_job_create(user=editor, loaders=Loader.objects.all(), file_format="xlsx")
    exporting.export_job_run(job_id=created.pk)


@pytest.mark.parametrize("export", [admin_action, admin_button, api, job])
def test_an_export_costs_the_same_queries_for_more_loaders(client, editor, new_loader, export):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            export(client, editor)
        return len(captured.captured_queries)

    client.force_login(editor)
    for n in range(3):
        new_loader(f"FIRST-{n}", description="=cmd")
    queries()  # warm-up: sessions, permissions, content types
    few = queries()
    for n in range(6):
        new_loader(f"MORE-{n}", connection_password="pw")
    assert queries() == few
