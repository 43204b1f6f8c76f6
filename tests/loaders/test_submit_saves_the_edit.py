"""Submitting from the version page: the edit on the page is saved first (or refused with its
errors, nothing lost), an empty change is refused by the service on every path, and the approver
reads the submitter's comment beside the differences."""

from __future__ import annotations

from typing import Any

import pytest

from etl_monitor.errors import StateConflict
from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState
from tests.conftest import version


def _form_data(client: Any, url: str, **changes: Any) -> dict[str, Any]:
    """What the browser would post: the form's current values, with ``changes``."""
    form = client.get(url).context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is not None and name not in ("connection_password", "clear_connection_password"):
            data[name] = value
    data.update(changes)
    return data


@pytest.fixture
def draft_v2(active_loader: Loader, editor) -> LoaderVersion:
    return services.loader_draft_start(user=editor, loader=active_loader)


def test_it_saves_the_unsaved_edit_and_submits_it(client, editor, draft_v2):
    url = f"/admin/loaders/loaderversion/{draft_v2.pk}/change/"
    client.force_login(editor)
    data = _form_data(client, url, grace_minutes=35, _submit_for_approval="1", submit_comment="Month end is slower")
    page = client.post(url, data, follow=True).content.decode()
    v2 = version(draft_v2.loader, 2)
    assert (v2.state, v2.grace_minutes, v2.submitted_comment) == (
        VersionState.PENDING_APPROVAL,
        35,
        "Month end is slower",
    )
    assert "SALES-DAILY v2 saved and submitted for approval." in page


def test_it_refuses_to_submit_an_invalid_edit_and_keeps_it_in_the_form(client, editor, draft_v2):
    url = f"/admin/loaders/loaderversion/{draft_v2.pk}/change/"
    client.force_login(editor)
    data = _form_data(client, url, grace_minutes=35, expected_rows_min=5000, _submit_for_approval="1")
    data["submit_comment"] = "please"
    response = client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Not submitted for approval: correct the errors below first" in html
    assert "Expected rows minimum must not exceed the maximum." in html
    assert 'value="35"' in html and 'value="please"' in html  # the edit and the comment are still there
    v2 = version(draft_v2.loader, 2)
    assert (v2.state, v2.grace_minutes) == (VersionState.DRAFT, 20)


def test_it_refuses_an_empty_change_from_the_page(client, editor, draft_v2):
    url = f"/admin/loaders/loaderversion/{draft_v2.pk}/change/"
    client.force_login(editor)
    page = client.post(url, _form_data(client, url, _submit_for_approval="1"), follow=True).content.decode()
    assert "no differences from the active version v1" in page
    assert version(draft_v2.loader, 2).state == VersionState.DRAFT


def test_the_service_refuses_an_empty_change_on_every_path(editor, draft_v2):
    with pytest.raises(StateConflict, match="no differences from the active version v1"):
        services.loader_version_submit(user=editor, version=draft_v2)
    assert version(draft_v2.loader, 2).state == VersionState.DRAFT


def test_an_edit_undone_before_submitting_is_an_empty_change(editor, draft_v2):
    services.loader_version_update(user=editor, version=draft_v2, data={"grace_minutes": 5})
    services.loader_version_update(user=editor, version=draft_v2, data={"grace_minutes": 20})
    with pytest.raises(StateConflict, match="no differences"):
        services.loader_version_submit(user=editor, version=draft_v2)


def test_a_first_version_is_never_an_empty_change(editor, new_loader):
    v1 = services.loader_version_submit(user=editor, version=new_loader().open_version)
    assert v1.state == VersionState.PENDING_APPROVAL


def test_the_api_refuses_an_empty_change_with_409(editor, draft_v2):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(editor)
    response = api.post("/api/v1/loaders/SALES-DAILY/submit/", {"comment": "x"}, format="json")
    assert response.status_code == 409
    assert "no differences from the active version v1" in response.json()["detail"]


def test_the_approver_sees_the_comment_and_the_differences_on_one_page(client, editor, approver, draft_v2):
    services.loader_version_update(user=editor, version=draft_v2, data={"grace_minutes": 35})
    services.loader_version_submit(user=editor, version=draft_v2, comment="Month end <b>is</b> slower")
    client.force_login(approver)
    html = client.get(f"/admin/loaders/loaderversion/{draft_v2.pk}/change/").content.decode()
    assert "Submitted by eddie-editor at " in html
    assert "Month end &lt;b&gt;is&lt;/b&gt; slower" in html  # escaped, never markup
    assert "Changes compared with the active version v1" in html
    assert "<td>20</td><td><strong>35</strong></td>" in html.replace("\n", "")
    assert "/do/approve/" in html


def test_withdrawing_forgets_the_comment(editor, draft_v2):
    services.loader_version_update(user=editor, version=draft_v2, data={"grace_minutes": 35})
    services.loader_version_submit(user=editor, version=draft_v2, comment="first try")
    v2 = services.loader_version_withdraw(user=editor, version=draft_v2)
    assert (v2.state, v2.submitted_comment) == (VersionState.DRAFT, "")


def test_an_editor_after_submitting_is_not_told_their_role_cannot_approve(client, editor, draft_v2):
    url = f"/admin/loaders/loaderversion/{draft_v2.pk}/change/"
    client.force_login(editor)
    data = _form_data(client, url, grace_minutes=35, _submit_for_approval="1")
    html = client.post(url, data, follow=True).content.decode()
    assert "does not allow" not in html
    assert html.count("saved and submitted for approval") == 1


def test_an_approver_who_submitted_is_told_why_they_cannot_approve(client, maker_checker, team):
    loader = services.loader_create(user=maker_checker, data={"loader_code": "MINE", "name": "m", "owner": team.slug})
    v1 = services.loader_version_submit(user=maker_checker, version=loader.open_version)
    client.force_login(maker_checker)
    html = client.get(f"/admin/loaders/loaderversion/{v1.pk}/change/").content.decode()
    assert html.count("You submitted this version; another approver must approve it.") == 1


def test_the_api_shows_the_approver_the_submitters_comment(approver, editor, draft_v2):
    from rest_framework.test import APIClient

    services.loader_version_update(user=editor, version=draft_v2, data={"grace_minutes": 35})
    services.loader_version_submit(user=editor, version=draft_v2, comment="Month end is slower")
    api = APIClient()
    api.force_authenticate(approver)
    versions = api.get("/api/v1/loaders/SALES-DAILY/versions/").json()
    rows = versions["results"] if isinstance(versions, dict) else versions
    assert next(v for v in rows if v["number"] == 2)["submitted_comment"] == "Month end is slower"
