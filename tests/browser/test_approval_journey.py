"""The four-eyes journey in Chromium, as its two roles: an Editor changes a draft and presses
"Save and submit for approval" (the edit on the page is saved, not dropped; an invalid one is
refused and stays in the form; an unchanged draft is refused), then an Approver reads the
submitter's comment beside the differences and approves."""

from __future__ import annotations

from typing import Any

import pytest

from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState
from tests.browser.conftest import Page
from tests.conftest import version


@pytest.fixture
def draft_v2(active_loader: Loader, editor: Any) -> LoaderVersion:
    return services.loader_draft_start(user=editor, loader=active_loader)


def _type(page: Page, name: str, value: str) -> None:
    field = page.find(f"[name={name}]")
    field.clear()
    field.send_keys(value)


def _submit(page: Page) -> None:
    page.click("button[name=_submit_for_approval]")
    page.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")


def test_an_editor_submits_an_edit_and_an_approver_approves_it_reading_comment_and_diff(
    page: Page, editor: Any, approver: Any, draft_v2: LoaderVersion
) -> None:
    url = f"/admin/loaders/loaderversion/{draft_v2.pk}/change/"
    page.login(editor).open(url)
    _type(page, "grace_minutes", "35")
    _type(page, "submit_comment", "Month-end loads are slower")
    page.screenshot("editor-before-submit")
    _submit(page)
    page.wait_for_text("submitted for approval")
    v2 = version(draft_v2.loader, 2)
    assert (v2.state, v2.grace_minutes, v2.submitted_comment) == (
        VersionState.PENDING_APPROVAL,
        35,
        "Month-end loads are slower",
    )
    assert page.text().count("does not allow you to approve") == 0  # no false role message
    page.screenshot("editor-after-submit")

    page.driver.delete_all_cookies()
    page.login(approver).open(url)
    text = page.text()
    assert "Month-end loads are slower" in text  # the comment, on the page with the diff
    assert "Changes compared with the active version v1" in text
    row = page.find("#content-main table tbody tr").text
    assert "Grace" in row and "20" in row and "35" in row
    page.screenshot("approver-reads-comment-and-diff")
    page.click("form[action*='/approve/'] button[type=submit]")
    page.wait_for_text("approved; it is now the active version")
    assert version(draft_v2.loader, 2).state == VersionState.ACTIVE
    page.screenshot("approver-approved")


def test_an_invalid_edit_is_refused_and_stays_in_the_form(page: Page, editor: Any, draft_v2: LoaderVersion) -> None:
    page.login(editor).open(f"/admin/loaders/loaderversion/{draft_v2.pk}/change/")
    _type(page, "grace_minutes", "35")
    _type(page, "expected_rows_min", "5000")  # above the maximum (1000)
    _type(page, "submit_comment", "please")
    _submit(page)
    page.wait_for_text("Not submitted for approval")
    assert page.find("[name=grace_minutes]").get_attribute("value") == "35"
    assert page.find("[name=submit_comment]").get_attribute("value") == "please"
    assert version(draft_v2.loader, 2).state == VersionState.DRAFT
    page.screenshot("invalid-edit-refused")


def test_an_unchanged_draft_is_not_sent_to_the_approver(page: Page, editor: Any, draft_v2: LoaderVersion) -> None:
    page.login(editor).open(f"/admin/loaders/loaderversion/{draft_v2.pk}/change/")
    _submit(page)
    page.wait_for_text("has no differences from the active version")
    assert version(draft_v2.loader, 2).state == VersionState.DRAFT
    page.screenshot("empty-change-refused")
