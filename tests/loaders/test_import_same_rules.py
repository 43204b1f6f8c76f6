"""The import creates and changes loaders through the same services as the API and the admin:
a row is refused exactly when ``loader_create`` / ``loader_edit`` would refuse it, with the
same messages, and an imported loader is written (fields, tags, history) like a created one."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from etl_monitor.errors import InvalidInput, StateConflict
from etl_monitor.models import FieldProtection
from loaders import importing, services
from loaders.models import Loader, LoaderVersion
from loaders.spreadsheets import spreadsheet_read, spreadsheet_write
from tests.conftest import CONTRACT

NAME_LIMIT = Loader._meta.get_field("name").max_length


def _cell(value: Any) -> Any:
    return ", ".join(value) if isinstance(value, list) else value


def import_report(user, rows: list[dict[str, Any]], **options: Any) -> importing.ImportReport:
    headers = list(dict.fromkeys(key for row in rows for key in row))
    content = spreadsheet_write(
        headers=headers, rows=[[_cell(row.get(h)) for h in headers] for row in rows], file_format="xlsx"
    )
    sheet = spreadsheet_read(content=content, filename="loaders.xlsx", max_bytes=10**7, max_rows=100)
    return importing.loaders_import(user=user, sheet=sheet, source="loaders.xlsx", **{"dry_run": False, **options})


def import_errors(user, data: dict[str, Any]) -> dict[str, str]:
    """The import's errors for one row: column → its messages."""
    report = import_report(user, [data])
    assert not report.applied
    columns: dict[str, list[str]] = {}
    for column, message in report.rows[0].errors:
        columns.setdefault(column, []).append(message)
    return {column: " ".join(messages) for column, messages in columns.items()}


def service_errors(user, data: dict[str, Any]) -> dict[str, str]:
    """loader_create's refusal: field → its messages (a row-level error stands on loader_code in an import)."""
    with pytest.raises(InvalidInput) as refused:
        services.loader_create(user=user, data=data)
    return {
        ("loader_code" if field == "non_field_errors" else field): " ".join(messages)
        for field, messages in refused.value.errors.items()
    }


def api_errors(user, data: dict[str, Any]) -> dict[str, Any]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/loaders/", data, format="json")
    assert response.status_code == 400, response.json()
    return response.json()


def row(**data: Any) -> dict[str, Any]:
    return {"loader_code": "NEW-ONE", "name": "New one", "owner": "data-platform", **data}


BAD_ROWS = {
    "name one over the model's limit": (row(name="n" * (NAME_LIMIT + 1)), "name"),
    "empty name": (row(name=""), "name"),
    "lower-case code": (row(loader_code="new one"), "loader_code"),
    "unknown team": (row(owner="nobody"), "owner"),
    "minimum above maximum": (row(expected_rows_min=500, expected_rows_max=5), "non_field_errors"),
    "unknown severity": (row(default_severity="URGENT"), "default_severity"),
    "bad cron": (row(schedule_cron="99 * * * *"), "schedule_cron"),
    "unknown time zone": (row(schedule_timezone="Mars/Base"), "schedule_timezone"),
    "bad tag": (row(tags=["not a tag!"]), "tags"),
    "text over the field's limit": (row(target="t" * 201), "target"),
}


@pytest.mark.parametrize(("data", "field"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_new_row_is_refused_like_the_service_refuses_it(editor, team, data, field):
    expected = service_errors(editor, data)
    assert import_errors(editor, data) == expected
    assert ("loader_code" if field == "non_field_errors" else field) in expected
    assert field in api_errors(editor, data)
    assert not Loader.objects.exists()


def test_the_name_limit_is_the_models(editor, team):
    too_long = import_errors(editor, row(name="n" * (NAME_LIMIT + 1)))["name"]
    assert f"at most {NAME_LIMIT} characters" in too_long
    assert str(NAME_LIMIT) in api_errors(editor, row(name="n" * (NAME_LIMIT + 1)))["name"][0]
    report = import_report(editor, [row(name="n" * NAME_LIMIT)])
    assert report.ok and report.applied
    assert Loader.objects.get().name == "n" * NAME_LIMIT


def test_protection_on_create_is_the_services(editor, team):
    FieldProtection.objects.create(model_label="loaders.loaderversion", field_name="default_severity", level="LOCKED")
    data = row(default_severity="LOW")
    assert import_errors(editor, data) == service_errors(editor, data)
    assert "locked" in import_errors(editor, data)["default_severity"]
    report = import_report(editor, [row(default_severity="MEDIUM")])  # the default is not a write
    assert report.ok and report.applied


def test_a_tag_the_role_may_not_create_is_refused_alike(make_user, team):
    from django.contrib.auth.models import Permission

    user = make_user()
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_loader", "change_loaderversion", "view_loader"])
    )
    user = type(user).objects.get(pk=user.pk)
    data = row(tags=["nightly"])
    assert import_errors(user, data) == service_errors(user, data)
    assert "Unknown tag(s) nightly; your role cannot create tags." in import_errors(user, data)["tags"]


def test_a_pending_loader_refuses_imported_and_api_changes_alike(editor, pending_loader):
    data = {"loader_code": "SALES-DAILY", "name": pending_loader.name, "owner": "data-platform", "grace_minutes": 1}
    with pytest.raises(StateConflict) as refused:
        services.loader_edit(user=editor, loader=pending_loader, data={"grace_minutes": 1})
    assert import_errors(editor, data) == {"loader_code": refused.value.message}


def test_an_imported_loader_is_written_like_a_created_one(editor, team):
    data = {**CONTRACT, "name": "Same", "owner": team.slug, "tags": ["sales", "daily"], "connection_password": "pw"}
    services.loader_create(user=editor, data={"loader_code": "BY-SERVICE", **data}, reason="Imported from loaders.xlsx")
    report = import_report(editor, [{"loader_code": "BY-IMPORT", **data}])
    assert report.ok and report.applied

    def written(code: str) -> dict[str, Any]:
        loader = Loader.objects.get(loader_code=code)
        version = loader.versions.get()
        return {
            "loader": (loader.name, loader.owner, loader.is_paused, loader.created_by),
            "tags": sorted(t.name for t in loader.tags.all()),
            "version": [getattr(version, f) for f in (*LoaderVersion.CONTRACT_FIELDS, "state", "number", "created_by")],
            "loader history": [
                (h.history_type, h.history_user, h.history_change_reason, sorted(t.tag.name for t in h.tags.all()))
                for h in loader.history.order_by("history_id")
            ],
            "version history": [
                (h.history_type, h.history_user, h.history_change_reason, h.state)
                for h in version.history.order_by("history_id")
            ],
        }

    assert written("BY-IMPORT") == written("BY-SERVICE")
