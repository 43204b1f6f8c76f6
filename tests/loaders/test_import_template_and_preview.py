"""The import template's example row can change no real loader (its code is refused on every
path); the preview shows every field a new row sets; the loader list offers Export beside Import."""

from __future__ import annotations

import io

import pytest

from etl_monitor.errors import InvalidInput
from loaders import importing, services
from loaders.models import Loader
from loaders.spreadsheets import spreadsheet_read, spreadsheet_write


def _preview(user, content: bytes):
    sheet = spreadsheet_read(content=content, filename="t.xlsx", max_bytes=10_000_000, max_rows=1000)
    return importing.loaders_import(user=user, sheet=sheet, dry_run=True)


def test_the_template_left_as_it_is_is_refused_with_a_row_error(editor, team, active_loader):
    report = _preview(editor, importing.loaders_template())
    assert not report.ok
    [row] = report.rows
    assert row.status == "error"
    assert (
        "loader_code",
        "EXAMPLE-DELETE-ME is the template's example row: delete that row, or give the loader its own code.",
    ) in row.errors
    assert Loader.objects.count() == 1  # SALES-DAILY, untouched
    assert Loader.objects.get().owner == team


def test_the_example_row_beside_real_rows_writes_nothing(editor, team):
    headers = ["loader_code", "name", "owner"]
    rows = [["EXAMPLE-DELETE-ME", "x", team.slug], ["REAL-ONE", "Real", team.slug]]
    sheet = spreadsheet_read(
        content=spreadsheet_write(headers=headers, rows=rows, file_format="xlsx"),
        filename="t.xlsx",
        max_bytes=10_000_000,
        max_rows=1000,
    )
    report = importing.loaders_import(user=editor, sheet=sheet, dry_run=False)
    assert not report.applied
    assert not Loader.objects.exists()


def test_no_path_can_create_the_example_code(editor, team):
    with pytest.raises(InvalidInput) as refused:
        services.loader_create(user=editor, data={"loader_code": "EXAMPLE-DELETE-ME", "name": "x", "owner": team.slug})
    assert "example row" in refused.value.errors["loader_code"][0]


def test_the_preview_shows_every_field_of_a_new_row(editor, team):
    headers = ["loader_code", "name", "owner", "tags", "is_paused", "schedule_cron", "grace_minutes"]
    rows = [["NEW-ONE", "Nightly orders", team.slug, "sales, daily", "yes", "30 2 * * *", 25]]
    report = _preview(editor, spreadsheet_write(headers=headers, rows=rows, file_format="xlsx"))
    [row] = report.rows
    assert row.status == "new"
    shown = {name: new for name, _old, new in row.changes}
    assert shown == {
        "name": "Nightly orders",
        "owner": team.slug,
        "tags": "daily, sales",
        "is_paused": "yes",
        "schedule_cron": "30 2 * * *",
        "grace_minutes": 25,
    }


def test_the_admin_preview_lists_name_owner_and_tags_of_new_rows(client, editor, team):
    client.force_login(editor)
    content = spreadsheet_write(
        headers=["loader_code", "name", "owner", "tags"],
        rows=[["IMP-ONE", "Orders into the lake", team.slug, "orders"]],
        file_format="xlsx",
    )
    upload = io.BytesIO(content)
    upload.name = "one.xlsx"
    html = client.post("/admin/loaders/loader/import/", {"file": upload}, follow=True).content.decode()
    assert "<strong>name</strong>: — &rarr; Orders into the lake" in html
    assert f"<strong>owner</strong>: — &rarr; {team.slug}" in html
    assert "<strong>tags</strong>: — &rarr; orders" in html


def test_the_loader_list_offers_export_beside_import(client, editor, active_loader):
    client.force_login(editor)
    html = client.get("/admin/loaders/loader/?owner__id__exact=1").content.decode()
    tools = html[html.index('class="object-tools"') :]
    tools = tools[: tools.index("</ul>")]
    assert "Import from spreadsheet" in tools
    assert '/admin/loaders/loader/export/?owner__id__exact=1">Export these loaders' in tools
