"""The screens #14 added, walked through in Chromium as the roles that use them: the loader
export (button on the list → export page → background job page → download link), the
"Clear the stored secret" box on a channel, and the Jira settings' sign-in mode."""

from __future__ import annotations

from typing import Any

from integrations.models import Channel, ChannelKind
from integrations.notifications.channels import channel_save
from tests.browser.conftest import Page

HOOK = "https://hooks.slack.com/services/T0/B0/never-show-me-0123456789"


def test_an_editor_exports_the_filtered_list_in_the_background_and_gets_the_file(
    page: Page, editor: Any, active_loader: Any, settings: Any
) -> None:
    settings.LOADER_EXPORT_SYNC_ROWS = 0  # every export goes through the job page
    page.login(editor).open("/admin/loaders/loader/?q=" + active_loader.loader_code)
    page.click("a[href*='/admin/loaders/loader/export/']")
    assert "Export 1 loader" in page.text()
    assert f"“{active_loader.loader_code}”" in page.text()  # the search the list had
    page.screenshot("export-page")
    page.click("button[name=format][value=xlsx]")
    page.wait_for_text("Download the file")
    link = page.find("a.button.default")
    assert link.get_attribute("href").endswith("/download/")
    page.screenshot("export-job-done")


def test_an_admin_clears_a_stored_secret_and_a_viewer_sees_neither_box_nor_value(
    page: Page, admin_user: Any, viewer: Any
) -> None:
    hook = channel_save(user=admin_user, data={"name": "slack-hook", "kind": ChannelKind.SLACK_WEBHOOK, "secret": HOOK})
    url = f"/admin/integrations/channel/{hook.pk}/change/"
    page.login(viewer).open(url)
    assert page.find_all("[name=clear_secret]") == [] and page.find_all("[name=secret]") == []
    assert HOOK not in page.driver.page_source
    page.screenshot("viewer-channel")

    page.driver.delete_all_cookies()
    page.login(admin_user).open(url)
    assert HOOK not in page.driver.page_source
    page.click("[name=clear_secret]").screenshot("admin-ticks-clear")
    page.click("[name=_continue]")
    page.wait_for_text("was changed successfully")
    assert Channel.objects.get(pk=hook.pk).secret in ("", None)
    assert "cannot send" in page.text().lower()
    page.screenshot("admin-secret-cleared")


def test_an_admin_sees_which_jira_sign_in_is_in_use_without_any_credential(
    page: Page, admin_user: Any, settings: Any
) -> None:
    settings.JIRA_BASE_URL = "https://jira.example.com"
    settings.JIRA_PROJECT = "OPS"
    settings.JIRA_AUTH = "token"
    settings.JIRA_PERSONAL_ACCESS_TOKEN = "pat-never-shown-0123456789"
    page.login(admin_user).open("/admin/integrations/jirasettings/")
    assert "personal access token (Bearer)" in page.text()
    assert "token set (JIRA_PERSONAL_ACCESS_TOKEN)" in page.text()
    assert "pat-never-shown" not in page.driver.page_source
    page.screenshot("jira-token-mode")

    settings.JIRA_AUTH = "basic"
    settings.JIRA_USERNAME = "bot@example.com"
    settings.JIRA_API_TOKEN = "api-never-shown-0123456789"
    page.open("/admin/integrations/jirasettings/")
    assert "sign-in basic · user bot@example.com · API token set" in page.text()
    assert "api-never-shown" not in page.driver.page_source
    page.screenshot("jira-basic-mode")
