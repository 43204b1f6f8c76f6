"""Field-level protection: secrets and protected fields never leak, locked fields never change."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection
from rest_framework.test import APIClient

from etl_monitor.errors import InvalidInput
from etl_monitor.log_filters import ScrubbingFormatter
from etl_monitor.models import FieldProtection
from etl_monitor.protection import MASK, outbound_redact, policy_for
from etl_monitor.roles import Role
from loaders import services
from loaders.models import Loader, LoaderVersion
from tests.config_files import config_refused

SECRET = "S3CRET-MARKER-7731"
HOST = "HOST-MARKER-4412"
ROLES = [Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN]


def protect(field: str, level: str, *exempt: str, model: str = "loaders.loaderversion") -> FieldProtection:
    rule = FieldProtection.objects.create(model_label=model, field_name=field, level=level)
    rule.exempt_groups.set(Group.objects.filter(name__in=exempt))
    return rule


@pytest.fixture
def guarded(pending_loader, editor):
    """SALES-DAILY: v1 ACTIVE and v2 PENDING, both with the secret and the host marker, plus history."""
    v1 = pending_loader.versions.get(number=1)
    v2 = pending_loader.versions.get(number=2)
    for v in (v1, v2):
        LoaderVersion.objects.filter(pk=v.pk).update(connection_host=HOST)
        v.refresh_from_db()
        v.connection_password = SECRET
        v._history_user = editor
        v.save()  # a history row that holds the (encrypted) secret
    return Loader.objects.get(pk=pending_loader.pk)


def surfaces(loader: Loader) -> list[str]:
    v1, v2 = loader.versions.get(number=1), loader.versions.get(number=2)
    pages = [
        "/admin/loaders/loader/",
        f"/admin/loaders/loader/{loader.pk}/change/",
        f"/admin/loaders/loader/{loader.pk}/history/",
        "/admin/loaders/loaderversion/",
        "/admin/loaders/pendingapproval/",
        "/api/v1/loaders/",
        "/api/v1/loaders/SALES-DAILY/",
        "/api/v1/loaders/SALES-DAILY/versions/",
    ]
    for v in (v1, v2):
        pages += [f"/admin/loaders/loaderversion/{v.pk}/change/", f"/admin/loaders/loaderversion/{v.pk}/history/"]
        pages += [f"/admin/loaders/loaderversion/{v.pk}/history/{h.history_id}/" for h in v.history.all()]
    return pages


def fetch_all(client, loader: Loader) -> dict[str, str]:
    found = {}
    for url in surfaces(loader):
        response = client.get(url)
        assert response.status_code in (200, 403), (url, response.status_code)
        found[url] = response.content.decode()
    found.update(exports_and_preview(client, loader))
    return found


def exports_and_preview(client, loader: Loader) -> dict[str, str]:
    """The export in both formats (read back as text) and an import preview of that export."""
    import io

    import openpyxl

    found = {}
    csv_export = client.get("/api/v1/loaders/export/?format=csv")
    found["export.csv"] = csv_export.content.decode("utf-8-sig")
    xlsx_export = client.get("/api/v1/loaders/export/?format=xlsx")
    if xlsx_export.status_code == 200:
        book = openpyxl.load_workbook(io.BytesIO(xlsx_export.content))
        found["export.xlsx"] = str([list(row) for row in book.active.values])
    admin_export = client.post("/admin/loaders/loader/", {"action": "export_csv", "_selected_action": [loader.pk]})
    found["admin export"] = admin_export.content.decode("utf-8-sig", errors="replace")
    if xlsx_export.status_code == 200:
        upload = io.BytesIO(xlsx_export.content)
        upload.name = "roundtrip.xlsx"
        preview = client.post("/admin/loaders/loader/import/", {"file": upload}, follow=True)
        found["admin import preview"] = preview.content.decode()
        upload.seek(0)
        found["api import preview"] = client.post(
            "/api/v1/loaders/import/", {"file": upload, "dry_run": "true"}
        ).content.decode()
    return found


@pytest.mark.parametrize("role", [*ROLES, "superuser"])
def test_a_secret_appears_on_no_surface_for_any_role(client, make_user, guarded, role):
    user = make_user(Role.ADMIN, is_superuser=True) if role == "superuser" else make_user(role)
    client.force_login(user)
    pages = fetch_all(client, guarded)
    leaks = [url for url, html in pages.items() if SECRET in html]
    assert leaks == []
    assert any("•••••• (set)" in html for html in pages.values())


def test_the_database_never_holds_the_secret_in_clear(guarded):
    with connection.cursor() as cursor:
        cursor.execute("SELECT connection_password FROM loaders_loaderversion")
        rows = [r[0] for r in cursor.fetchall()]
        cursor.execute("SELECT connection_password FROM loaders_historicalloaderversion")
        rows += [r[0] for r in cursor.fetchall()]
    assert rows and all(SECRET not in (value or "") for value in rows)
    assert all(value.startswith("fernet:") for value in rows if value)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR])
def test_a_hidden_field_appears_nowhere_for_a_role_that_is_not_exempt(client, make_user, guarded, role):
    protect("connection_host", "HIDDEN", Role.ADMIN)
    client.force_login(make_user(role))
    pages = fetch_all(client, guarded)
    assert [url for url, html in pages.items() if HOST in html] == []
    detail = APIClient()
    detail.force_authenticate(make_user(role))
    assert "connection_host" not in detail.get("/api/v1/loaders/SALES-DAILY/").json()["active_version"]


def test_an_exempt_role_sees_a_hidden_field(make_user, guarded):
    protect("connection_host", "HIDDEN", Role.ADMIN)
    client = APIClient()
    client.force_authenticate(make_user(Role.ADMIN))
    assert client.get("/api/v1/loaders/SALES-DAILY/").json()["active_version"]["connection_host"] == HOST


def test_a_masked_field_shows_only_the_mask(make_user, guarded):
    protect("connection_host", "MASKED")
    client = APIClient()
    client.force_authenticate(make_user(Role.VIEWER))
    body = client.get("/api/v1/loaders/SALES-DAILY/").json()
    assert body["active_version"]["connection_host"] == MASK
    assert HOST not in str(body)


def test_a_locked_field_cannot_be_changed_on_any_path(client, make_user, active_loader, editor, tmp_path):
    protect("default_severity", "LOCKED", Role.ADMIN)
    api = APIClient()
    api.force_authenticate(editor)
    response = api.patch("/api/v1/loaders/SALES-DAILY/", {"default_severity": "LOW"}, format="json")
    assert response.status_code == 400
    assert "locked" in response.json()["default_severity"][0]
    assert api.patch("/api/v1/loaders/SALES-DAILY/", {"default_severity": "HIGH"}, format="json").status_code == 200
    with pytest.raises(InvalidInput) as exc:
        services.loader_edit(user=editor, loader=active_loader, data={"default_severity": "LOW"})
    assert "default_severity" in exc.value.errors
    admin_api = APIClient()
    admin_api.force_authenticate(make_user(Role.ADMIN))
    ok = admin_api.patch("/api/v1/loaders/SALES-DAILY/", {"default_severity": "LOW"}, format="json")
    assert ok.status_code == 200
    assert ok.json()["open_version"]["default_severity"] == "LOW"


def test_a_locked_field_is_read_only_in_the_admin_form(client, editor, new_loader):
    draft = new_loader().open_version
    protect("default_severity", "LOCKED")
    client.force_login(editor)
    html = client.get(f"/admin/loaders/loaderversion/{draft.pk}/change/").content.decode()
    assert 'name="default_severity"' not in html
    assert 'name="grace_minutes"' in html


def test_a_locked_field_in_apply_config_is_an_error(tmp_path, active_loader):
    protect("default_severity", "LOCKED")
    err = config_refused(tmp_path, "loaders:\n  - loader_code: SALES-DAILY\n    default_severity: LOW\n")
    assert "loaders[0].default_severity: This field is locked" in err


def test_a_secret_is_replaceable_but_never_readable(editor, new_loader):
    new_loader()
    api = APIClient()
    api.force_authenticate(editor)
    response = api.patch("/api/v1/loaders/SALES-DAILY/", {"connection_password": SECRET}, format="json")
    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    assert response.json()["open_version"]["connection_password_set"] is True
    assert LoaderVersion.objects.get().connection_password == SECRET


def test_secrets_cannot_be_made_merely_locked_or_exempted(db):
    rule = FieldProtection(model_label="loaders.loaderversion", field_name="connection_password", level="LOCKED")
    with pytest.raises(ValidationError, match="always masked"):
        rule.full_clean(validate_unique=False)
    with pytest.raises(ValidationError, match="no protectable field"):
        FieldProtection(model_label="loaders.loaderversion", field_name="nope", level="MASKED").full_clean()


def test_exempt_roles_still_cannot_read_a_secret(make_user, guarded):
    rule = FieldProtection.objects.get(field_name="connection_password")
    rule.exempt_groups.set(Group.objects.all())
    policy = policy_for(make_user(Role.ADMIN), LoaderVersion)
    assert policy.display("connection_password", SECRET) == f"{MASK} (set)"


def test_outbound_payloads_apply_every_protection(db):
    protect("connection_host", "HIDDEN", Role.ADMIN)
    payload = outbound_redact(LoaderVersion, {"connection_host": HOST, "connection_password": SECRET, "target": "dwh"})
    assert payload == {"connection_password": f"{MASK} (set)", "target": "dwh"}


def test_log_lines_and_tracebacks_are_scrubbed():
    formatter = ScrubbingFormatter("%(message)s")
    try:
        raise ValueError(f"cannot connect to postgres://etl:{SECRET}@db/sales with password={SECRET}")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token: %s", (SECRET,), sys.exc_info())
    text = formatter.format(record)
    assert SECRET not in text
    assert "ValueError" in text and "postgres://etl:" in text


def test_keys_rotate_without_losing_secrets(settings, new_loader):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [old]
    new_loader(connection_password=SECRET)
    settings.FIELD_ENCRYPTION_KEY = [new, old]
    version = LoaderVersion.objects.get()
    assert version.connection_password == SECRET
    version.save()
    settings.FIELD_ENCRYPTION_KEY = [new]
    assert LoaderVersion.objects.get().connection_password == SECRET


def test_creating_with_a_locked_field_other_than_its_default_is_refused(editor, team):
    protect("default_severity", "LOCKED")
    with pytest.raises(InvalidInput, match="default_severity"):
        services.loader_create(
            user=editor, data={"loader_code": "NEW", "name": "n", "owner": team.slug, "default_severity": "LOW"}
        )
    created = services.loader_create(
        user=editor, data={"loader_code": "NEW", "name": "n", "owner": team.slug, "default_severity": "MEDIUM"}
    )
    assert created.open_version.default_severity == "MEDIUM"


def test_an_import_preview_never_shows_a_secret_or_hidden_value(client, editor, guarded):
    import io

    from loaders.spreadsheets import spreadsheet_write

    protect("connection_host", "HIDDEN", Role.ADMIN)
    content = spreadsheet_write(
        headers=["loader_code", "name", "owner", "connection_host", "connection_password"],
        rows=[["SALES-DAILY", "SALES-DAILY loader", "data-platform", "NEW-" + HOST, "NEW-" + SECRET]],
        file_format="xlsx",
    )
    client.force_login(editor)
    upload = io.BytesIO(content)
    upload.name = "changes.xlsx"
    html = client.post("/admin/loaders/loader/import/", {"file": upload}, follow=True).content.decode()
    assert SECRET not in html and HOST not in html
    assert "hidden from your role" in html  # changing a HIDDEN field is refused, without echoing it


def test_the_version_comparison_and_schedules_follow_the_policy(client, editor, active_loader, approver):
    services.loader_edit(
        user=editor, loader=active_loader, data={"connection_host": HOST, "schedule_cron": "7 7 * * *"}
    )
    protect("connection_host", "HIDDEN", Role.ADMIN)
    protect("schedule_cron", "MASKED", Role.ADMIN)
    client.force_login(approver)
    draft = Loader.objects.get(pk=active_loader.pk).open_version
    version_page = client.get(f"/admin/loaders/loaderversion/{draft.pk}/change/").content.decode()
    loader_page = client.get(f"/admin/loaders/loader/{active_loader.pk}/change/").content.decode()
    for html in (version_page, loader_page):
        assert HOST not in html and "7 7 * * *" not in html
    assert "30 2 * * *" not in loader_page  # the active schedule in the banner is masked too
    assert "•••••• (changed)" in version_page


def test_search_and_filters_cannot_probe_protected_loader_fields(make_user, active_loader):
    protect("name", "HIDDEN", Role.ADMIN, model="loaders.loader")
    protect("owner", "MASKED", Role.ADMIN, model="loaders.loader")
    client = APIClient()
    client.force_authenticate(make_user(Role.VIEWER))
    assert client.get("/api/v1/loaders/?search=SALES-DAILY loader").json()["count"] == 0
    assert client.get("/api/v1/loaders/?search=sales-daily").json()["count"] == 1  # the code is never protected
    assert client.get("/api/v1/loaders/?owner=data-platform").status_code == 400
    body = client.get("/api/v1/loaders/SALES-DAILY/").json()
    assert "name" not in body and body["owner"] == MASK
    client.force_authenticate(make_user(Role.ADMIN))
    assert client.get("/api/v1/loaders/?search=SALES-DAILY loader").json()["count"] == 1


def test_masked_identity_values_in_a_reimport_mean_unchanged(make_user, active_loader):
    from loaders import importing
    from loaders.spreadsheets import spreadsheet_read

    protect("name", "MASKED", model="loaders.loader")
    editor = make_user(Role.EDITOR)
    client = APIClient()
    client.force_authenticate(editor)
    content = client.get("/api/v1/loaders/export/?format=xlsx").content
    sheet = spreadsheet_read(content=content, filename="x.xlsx", max_bytes=10**7, max_rows=100)
    report = importing.loaders_import(user=editor, sheet=sheet, dry_run=False)
    assert report.ok and report.unchanged == 1
    assert Loader.objects.get().name == "SALES-DAILY loader"


def test_a_hidden_name_is_not_on_version_pages(client, viewer, active_loader):
    protect("name", "HIDDEN", Role.ADMIN, model="loaders.loader")
    client.force_login(viewer)
    html = client.get(f"/admin/loaders/loaderversion/{active_loader.versions.get().pk}/change/").content.decode()
    assert "SALES-DAILY loader" not in html and "SALES-DAILY" in html
