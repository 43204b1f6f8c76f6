"""The browser harness itself: a real Chromium signs in through the login form and sees the admin."""

from __future__ import annotations

from tests.browser.conftest import PHONE, Page


def test_a_viewer_signs_in_through_the_login_form_and_sees_the_admin(page: Page, viewer) -> None:
    page.login(viewer)
    assert "Log out" in page.text() or "LOG OUT" in page.text().upper()
    assert page.screenshot("signed-in").stat().st_size > 0


def test_a_wrong_password_keeps_the_user_on_the_login_page_with_the_reason(page: Page, viewer) -> None:
    page.open("/admin/login/")
    page.find("[name=username]").send_keys(viewer.username)
    page.find("[name=password]").send_keys("not-the-password")
    page.click("[type=submit]")
    page.wait_for_text("correct username and password")
    assert "/admin/login/" in page.driver.current_url


def test_the_login_page_fits_a_phone_without_horizontal_scrolling(page: Page) -> None:
    page.viewport(PHONE).open("/admin/login/")
    assert page.horizontal_overflow() == 0
    page.screenshot("phone-login")
