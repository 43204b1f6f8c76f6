"""The admin as business users use it: create, edit the draft, submit, approve, reject."""

from __future__ import annotations

from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState
from tests.conftest import CONTRACT, version


def _version_form(v: LoaderVersion, **changes) -> dict:
    data = {f: ("" if getattr(v, f) is None else getattr(v, f)) for f in LoaderVersion.CONTRACT_FIELDS}
    data["connection_password"] = ""
    data.update(changes)
    return data


def test_an_editor_creates_a_loader_and_lands_on_its_draft(client, editor, team):
    client.force_login(editor)
    response = client.post(
        "/admin/loaders/loader/add/",
        {"loader_code": "ADMIN-MADE", "name": "Made in admin", "owner": team.pk, "tags": []},
    )
    loader = Loader.objects.get(loader_code="ADMIN-MADE")
    draft = loader.open_version
    assert response.status_code == 302
    assert response["Location"] == f"/admin/loaders/loaderversion/{draft.pk}/change/"
    assert draft.created_by == editor


def test_the_add_form_names_a_bad_code(client, editor, team):
    client.force_login(editor)
    response = client.post("/admin/loaders/loader/add/", {"loader_code": "bad code", "name": "x", "owner": team.pk})
    assert response.status_code == 200
    assert "upper-case letters" in response.content.decode()
    assert not Loader.objects.exists()


def test_an_editor_edits_the_draft_and_the_password_is_kept_unless_replaced(client, editor, new_loader):
    loader = new_loader(connection_password="keep-me-123")
    draft = loader.open_version
    client.force_login(editor)
    page = client.get(f"/admin/loaders/loaderversion/{draft.pk}/change/")
    assert "keep-me-123" not in page.content.decode()
    assert "•••••• (set)" in page.content.decode()
    response = client.post(f"/admin/loaders/loaderversion/{draft.pk}/change/", _version_form(draft, grace_minutes=42))
    assert response.status_code == 302, response.content.decode()[:2000]
    draft.refresh_from_db()
    assert (draft.grace_minutes, draft.connection_password) == (42, "keep-me-123")
    client.post(
        f"/admin/loaders/loaderversion/{draft.pk}/change/", _version_form(draft, connection_password="new-pass")
    )
    draft.refresh_from_db()
    assert draft.connection_password == "new-pass"
    client.post(
        f"/admin/loaders/loaderversion/{draft.pk}/change/", _version_form(draft, clear_connection_password="on")
    )
    draft.refresh_from_db()
    assert draft.connection_password == ""


def test_the_draft_form_names_a_bad_cron(client, editor, new_loader):
    draft = new_loader().open_version
    client.force_login(editor)
    response = client.post(
        f"/admin/loaders/loaderversion/{draft.pk}/change/", _version_form(draft, schedule_cron="61 * * * *")
    )
    assert response.status_code == 200
    assert "not a valid five-field cron expression" in response.content.decode()
    assert version(draft.loader, 1).schedule_cron == CONTRACT["schedule_cron"]


def test_pending_and_active_versions_are_read_only(client, editor, pending_loader):
    client.force_login(editor)
    for number in (1, 2):
        v = version(pending_loader, number)
        page = client.get(f"/admin/loaders/loaderversion/{v.pk}/change/")
        assert page.status_code == 200
        assert 'name="grace_minutes"' not in page.content.decode()
        posted = client.post(f"/admin/loaders/loaderversion/{v.pk}/change/", _version_form(v, grace_minutes=1))
        assert posted.status_code == 403
        assert version(pending_loader, number).grace_minutes == 20


def test_submit_approve_through_the_buttons(client, editor, approver, new_loader):
    draft = new_loader().open_version
    client.force_login(editor)
    page = client.get(f"/admin/loaders/loaderversion/{draft.pk}/change/").content.decode()
    assert 'name="_submit_for_approval"' in page  # part of the change form: the edit is saved first
    done = client.post(f"/admin/loaders/loaderversion/{draft.pk}/do/submit/", follow=True)
    assert "SALES-DAILY v1 submitted for approval." in done.content.decode()
    client.force_login(approver)
    waiting = client.get("/admin/loaders/pendingapproval/").content.decode()
    assert "Review SALES-DAILY v1" in waiting
    done = client.post(f"/admin/loaders/loaderversion/{draft.pk}/do/approve/", {"comment": "fine"}, follow=True)
    assert "approved; it is now the active version" in done.content.decode()
    assert version(draft.loader, 1).state == VersionState.ACTIVE


def test_the_waiting_list_hides_my_own_submissions(client, maker_checker, team):
    loader = services.loader_create(user=maker_checker, data={"loader_code": "MINE", "name": "m", "owner": team.slug})
    services.loader_version_submit(user=maker_checker, version=loader.open_version)
    client.force_login(maker_checker)
    assert "Review MINE v1" not in client.get("/admin/loaders/pendingapproval/").content.decode()


def test_reject_asks_for_a_reason(client, approver, pending_loader):
    v2 = version(pending_loader, 2)
    client.force_login(approver)
    form = client.get(f"/admin/loaders/loaderversion/{v2.pk}/do/reject/")
    assert form.status_code == 200
    assert 'name="reason"' in form.content.decode()
    empty = client.post(f"/admin/loaders/loaderversion/{v2.pk}/do/reject/", {"reason": "  "})
    assert "A reason is required" in empty.content.decode()
    assert version(pending_loader, 2).state == VersionState.PENDING_APPROVAL
    client.post(f"/admin/loaders/loaderversion/{v2.pk}/do/reject/", {"reason": "Too long"})
    assert version(pending_loader, 2).state == VersionState.REJECTED
    assert version(pending_loader, 2).decision_comment == "Too long"


def test_the_version_page_compares_with_the_active_version(client, approver, pending_loader):
    client.force_login(approver)
    html = client.get(f"/admin/loaders/loaderversion/{version(pending_loader, 2).pk}/change/").content.decode()
    assert "Changes compared with the active version v1" in html
    assert "<td>45</td><td><strong>60</strong></td>" in html.replace("\n", "")


def test_the_loader_page_starts_a_draft(client, editor, active_loader):
    client.force_login(editor)
    page = client.get(f"/admin/loaders/loader/{active_loader.pk}/change/").content.decode()
    assert "Monitoring uses" in page and "new draft" in page
    response = client.post(f"/admin/loaders/loader/{active_loader.pk}/start-draft/")
    draft = Loader.objects.get(pk=active_loader.pk).open_version
    assert response["Location"] == f"/admin/loaders/loaderversion/{draft.pk}/change/"


def test_starting_a_draft_while_pending_explains_why_not(client, editor, pending_loader):
    client.force_login(editor)
    response = client.post(f"/admin/loaders/loader/{pending_loader.pk}/start-draft/", follow=True)
    assert "is pending approval; withdraw it" in response.content.decode()


def test_a_locked_code_is_read_only_in_the_admin(client, editor, active_loader, team):
    client.force_login(editor)
    page = client.get(f"/admin/loaders/loader/{active_loader.pk}/change/").content.decode()
    assert 'name="loader_code"' not in page
    client.post(
        f"/admin/loaders/loader/{active_loader.pk}/change/",
        {"loader_code": "HACKED", "name": "Sales", "owner": team.pk, "tags": []},
    )
    assert Loader.objects.get(pk=active_loader.pk).loader_code == "SALES-DAILY"


def test_the_changelist_shows_status_and_filters(client, viewer, pending_loader, new_loader):
    new_loader("CRM-SYNC")
    client.force_login(viewer)
    html = client.get("/admin/loaders/loader/").content.decode()
    assert "SALES-DAILY" in html and "CRM-SYNC" in html and "none yet" in html
    pending_only = client.get("/admin/loaders/loader/?approval=pending").content.decode()
    assert "SALES-DAILY" in pending_only and "CRM-SYNC" not in pending_only
    onboarding = client.get("/admin/loaders/loader/?monitoring=onboarding").content.decode()
    assert "CRM-SYNC" in onboarding and "SALES-DAILY" not in onboarding
    searched = client.get("/admin/loaders/loader/?q=crm").content.decode()
    assert "CRM-SYNC" in searched and ">SALES-DAILY<" not in searched


def test_the_admin_is_branded(client, viewer, settings):
    client.force_login(viewer)
    assert "ETL Monitor" in client.get("/admin/").content.decode()


def test_the_admin_import_previews_then_confirms(client, editor, team):
    from io import BytesIO

    from loaders.spreadsheets import spreadsheet_write

    client.force_login(editor)
    assert "Import from spreadsheet" in client.get("/admin/loaders/loader/").content.decode()
    content = spreadsheet_write(
        headers=["loader_code", "name", "owner", "schedule_cron"],
        rows=[["IMP-ONE", "One", team.slug, "0 1 * * *"], ["IMP-TWO", "Two", team.slug, ""]],
        file_format="xlsx",
    )
    upload = BytesIO(content)
    upload.name = "two.xlsx"
    preview = client.post("/admin/loaders/loader/import/", {"file": upload, "submit": "on"}, follow=True)
    html = preview.content.decode()
    assert "<strong>2</strong> new" in html
    assert "Confirm import and submit for approval" in html
    assert not Loader.objects.exists()
    done = client.post(preview.redirect_chain[-1][0], follow=True).content.decode()
    assert "submitted for approval" in done
    assert Loader.objects.get(loader_code="IMP-ONE").open_version.state == VersionState.PENDING_APPROVAL


def test_the_admin_import_shows_bad_rows_and_offers_no_confirm(client, editor, team):
    from io import BytesIO

    from loaders.spreadsheets import spreadsheet_write

    client.force_login(editor)
    content = spreadsheet_write(
        headers=["loader_code", "name", "owner"], rows=[["ok-not", "x", team.slug]], file_format="csv"
    )
    upload = BytesIO(content)
    upload.name = "bad.csv"
    html = client.post("/admin/loaders/loader/import/", {"file": upload}, follow=True).content.decode()
    assert "nothing was written" in html
    assert "Confirm import" not in html


def test_the_admin_import_refuses_a_non_spreadsheet(client, editor):
    from io import BytesIO

    client.force_login(editor)
    upload = BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    upload.name = "cat.xlsx"
    html = client.post("/admin/loaders/loader/import/", {"file": upload}).content.decode()
    assert "not" in html and "spreadsheet" in html


def test_the_admin_export_action(client, viewer, active_loader):
    client.force_login(viewer)
    response = client.post("/admin/loaders/loader/", {"action": "export_csv", "_selected_action": [active_loader.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "SALES-DAILY" in response.content.decode("utf-8-sig")


def test_viewers_cannot_open_the_import_page(client, viewer):
    client.force_login(viewer)
    assert client.get("/admin/loaders/loader/import/").status_code == 403
