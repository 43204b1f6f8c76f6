"""On-call in a real browser, as each role uses it: an Operator builds a schedule and reads who is
on call; a Viewer adds, verifies (with the code texted to the fake Twilio) and sets paging
preferences for their own phone (a refused one keeps what was typed); an Admin routes CRITICAL to the schedule."""

from __future__ import annotations

import re

import pytest

from integrations.models import NotificationRule
from oncall.models import ContactMethod, PagingPreference, Schedule
from tests.browser.conftest import Page
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixture

PHONE = "+14155550100"


@pytest.fixture(autouse=True)
def _no_notifications(settings) -> None:
    settings.NOTIFICATIONS_ENABLED = False


def body(page: Page) -> str:
    page.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")
    return page.js("return document.body.innerText")


def fill(page: Page, css: str, value: str) -> None:
    field = page.find(css)
    field.clear()
    field.send_keys(value)


def test_an_operator_builds_a_schedule_and_sees_who_is_on_call(page: Page, operator, make_user):
    for name in ("alice", "bob"):
        make_user("Operator", username=name, email=f"{name}@example.com")
    page.login(operator).open("/admin/oncall/schedule/add/")
    fill(page, "#id_name", "Data platform")
    fill(page, "#id_slug", "data-platform")
    fill(page, "#id_timezone", "Europe/Paris")
    fill(page, "#id_rotations-0-name", "Primary")
    page.js("document.querySelector('#id_rotations-0-start_date').value = '2026-11-30'")  # a date picker
    fill(page, "#id_rotations-0-members", "alice\nbob")
    page.screenshot("schedule-add")
    page.click("input[name=_continue]")
    page.wait_for(lambda d: d.find_elements("css selector", "#oncall-panel"))
    text = body(page)
    assert "On call now" in text
    assert re.search(r"(alice|bob)", page.find("#oncall-now").text)
    assert len(page.find_all("#oncall-days tr")) >= 14
    page.screenshot("schedule-page", docs="oncall-schedule")
    page.click("#feed-create-schedule")
    page.wait_for(lambda d: d.find_elements("css selector", "#feed-url"))
    assert re.search(r"/oncall/calendar/[^/]+\.ics$", page.find("#feed-url").get_attribute("value"))
    page.screenshot("calendar-feed-shown-once")
    assert Schedule.objects.get().rotations.get().members.count() == 2


def test_a_viewer_verifies_their_phone_and_sets_quiet_hours(page: Page, viewer, twilio: FakeTwilio):
    page.login(viewer).open("/admin/oncall/contactmethod/add/")
    page.js("document.querySelector('#id_kind').value = 'PHONE'")
    fill(page, "#id_value", "+1 415 555 0100")
    page.click("input[name=_save]")
    page.wait_for_text("Contact method")
    phone = ContactMethod.objects.get(user=viewer)
    page.open(f"/admin/oncall/contactmethod/{phone.pk}/change/")
    page.click("input[name=_send_code]")
    page.wait_for_text("A code was texted")
    [sms] = twilio.sms_to(PHONE)
    code = re.search(r"\b(\d{6})\b", sms["body"]).group(1)
    fill(page, "#id_code", code)
    page.screenshot("phone-code-entered")
    page.click("input[name=_save]")
    page.wait_for_text("is verified")
    page.screenshot("phone-verified", docs="oncall-phone-verified")
    phone.refresh_from_db()
    assert phone.verified_at is not None

    page.open("/admin/oncall/pagingpreference/")
    page.wait_for(lambda d: d.find_elements("css selector", "#id_quiet_start"))
    # One end only: refused under that field, with what was typed still there.
    fill(page, "#id_quiet_start", "22:00")
    fill(page, "#id_timezone", "Europe/Paris")
    page.click("input[name=_save]")
    page.wait_for_text("Give both ends of the quiet hours, or neither.")
    page.screenshot("paging-preferences-refused")
    assert "Give both ends" in page.find(".field-quiet_end").text
    assert page.find("#id_quiet_start").get_attribute("value") == "22:00"
    assert page.find("#id_timezone").get_attribute("value") == "Europe/Paris"
    assert not PagingPreference.objects.filter(user=viewer).exists()
    fill(page, "#id_quiet_end", "07:00")
    page.screenshot("paging-preferences")
    page.click("input[name=_save]")
    page.wait_for(lambda d: "was changed successfully" in d.page_source or "was added successfully" in d.page_source)
    preference = viewer.paging_preference
    assert str(preference.quiet_start) == "22:00:00"
    # The boxes started as paging does by default: setting quiet hours switched nothing else off.
    assert (preference.sms_severities, preference.voice_severities) == (["CRITICAL", "HIGH"], ["CRITICAL"])


def test_an_admin_routes_critical_to_the_schedule(page: Page, admin_user):
    Schedule.objects.create(name="Data platform", slug="data-platform", timezone="UTC")
    rule = NotificationRule.objects.get(severity="CRITICAL", team=None, tag=None)
    page.login(admin_user).open(f"/admin/integrations/notificationrule/{rule.pk}/change/")
    page.click("input[name=oncall][value=data-platform]")
    page.screenshot("rule-oncall")
    page.click("input[name=_save]")
    page.wait_for_text("was changed successfully")
    rule.refresh_from_db()
    assert rule.oncall == ["data-platform"]
