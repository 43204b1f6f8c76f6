"""The on-call incident page in a real browser: an Operator works an incident from the top of the
page, a Viewer only reads it, and it fits a phone."""

from __future__ import annotations

import pytest

from etl_monitor.models import FieldProtection
from incidents.models import Incident, Silence
from tests.browser.conftest import PHONE, Page
from tests.incidents.test_incident_page import incident_of_failed_run


@pytest.fixture(autouse=True)
def _no_notifications(settings) -> None:
    settings.NOTIFICATIONS_ENABLED = False  # the page is under test, not the outbox


@pytest.fixture
def incident(active_loader) -> Incident:
    return incident_of_failed_run(active_loader)


def open_incident(page: Page, incident: Incident) -> Page:
    page.open(f"/admin/incidents/incident/{incident.pk}/change/")
    page.wait_for(lambda d: d.find_elements("css selector", "#incident-page"))
    return page


def shows(page: Page, text: str) -> None:
    """Wait until the page (the one a click led to) shows ``text``. Read through script, so an
    element of the page being left never goes stale under the wait."""
    page.wait_for(lambda d: text in d.execute_script("return document.body ? document.body.innerText : ''"))


def chart_drawn(page: Page) -> bool:
    page.wait_for(lambda d: d.find_elements("css selector", "#incident-chart[data-drawn=true] canvas"))
    return True


def test_an_operator_acknowledges_and_silences_for_an_hour_from_the_top_of_the_page(page: Page, operator, incident):
    open_incident(page.login(operator), incident)
    page.screenshot("opened")
    assert page.find("#do-acknowledge").location["y"] < page.find("#what-fired").location["y"]
    page.click("#do-acknowledge")
    shows(page, f"Incident #{incident.pk}: acknowledged.")
    assert Incident.objects.get(pk=incident.pk).status == "ACKNOWLEDGED"
    assert not page.find_all("#do-acknowledge")  # the state no longer allows it
    page.click("#silence-1h")
    shows(page, "Silenced until")
    silence = Silence.objects.get()
    assert silence.loader_id == incident.loader_id and silence.rule_id is None
    assert 3590 <= (silence.ends_at - silence.starts_at).total_seconds() <= 3610
    timeline = page.find("#timeline").text
    assert "Silence created by otto-operator: Silenced this loader (SALES-DAILY) for 1 h" in timeline
    assert "Acknowledged by otto-operator" in timeline
    page.screenshot("acknowledged-and-silenced")


def test_a_viewer_reads_the_incident_without_action_buttons(page: Page, viewer, incident):
    open_incident(page.login(viewer), incident)
    assert not page.find_all("#incident-actions")
    assert not page.find_all("button[formaction]")
    assert "1 failed run in the last 1 h" in page.find("#what-fired").text
    page.screenshot("viewer")


def test_the_error_text_is_a_preformatted_block_with_real_line_breaks(page: Page, viewer, incident):
    open_incident(page.login(viewer), incident)
    error = page.find("#incident-error")
    assert error.tag_name == "pre"
    lines = error.text.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"
    assert "\\n" not in error.text


def test_the_chart_is_drawn_from_the_loaders_runs(page: Page, viewer, incident):
    open_incident(page.login(viewer), incident)
    assert chart_drawn(page)
    assert page.find("#incident-chart").get_attribute("data-series") == "2"  # durations, failed runs
    page.js("document.getElementById('chart').scrollIntoView()")
    page.screenshot("chart")


def test_the_incident_page_fits_a_phone_without_horizontal_scrolling(page: Page, operator, incident):
    page.login(operator).viewport(PHONE)
    open_incident(page, incident)
    assert chart_drawn(page)
    assert page.horizontal_overflow() == 0
    page.screenshot("phone")
    page.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.horizontal_overflow() == 0
    page.screenshot("phone-internals-open")


def test_hidden_loader_fields_stay_hidden_on_the_incident_page(page: Page, viewer, incident):
    FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    FieldProtection.objects.create(model_label="loaders.loader", field_name="owner", level="HIDDEN")
    open_incident(page.login(viewer), incident)
    page.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    source = page.driver.page_source
    assert incident.loader.name not in source and incident.loader.owner.name not in source
    assert "SALES-DAILY" in page.text()


def test_the_list_shows_open_incidents_with_long_titles_on_few_lines(page: Page, viewer, incident):
    long_title = "SALES-DAILY: the nightly load of the sales warehouse failed after the upstream shop export came late"
    Incident.objects.filter(pk=incident.pk).update(title=long_title)
    page.login(viewer).open("/admin/incidents/incident/")
    assert "Showing open and acknowledged incidents" in page.find("#incident-list-scope").text
    title = page.find(".incident-list-title")
    line_height = float(page.js("return parseFloat(getComputedStyle(arguments[0]).lineHeight)", title))
    lines = round(page.js("return arguments[0].getBoundingClientRect().height", title) / line_height)
    page.screenshot("list")
    assert lines <= 3, f"a {len(long_title)}-character title wraps over {lines} lines"
    assert page.find("td.field-status_badge").text == "Open"
    assert page.js("return document.querySelector('#changelist .results').scrollWidth") <= page.js(
        "return document.querySelector('#changelist .results').clientWidth"
    ), "columns are cut off"
    page.click("#incident-list-scope a")
    assert "status=all" in page.driver.current_url
    page.viewport(PHONE).open("/admin/incidents/incident/")
    page.screenshot("phone-list")
    assert page.horizontal_overflow() == 0
    results = "document.querySelector('#changelist .results')"
    assert page.js(f"return {results}.scrollWidth <= {results}.clientWidth"), "the list scrolls sideways on a phone"


def test_an_operator_sets_up_a_weekly_maintenance_window_and_the_list_says_it_in_words(page: Page, operator):
    page.login(operator).open("/admin/incidents/silence/")
    page.click("a[href$='/silence/recurring/']")
    for day in ("MO", "WE"):
        page.click(f"input[name=weekdays][value={day}]")
    page.find("[name=start_time]").send_keys("22:00")
    duration = page.find("[name=duration_minutes]")
    duration.clear()
    duration.send_keys("90")
    zone = page.find("[name=timezone]")
    zone.clear()
    zone.send_keys("Europe/Berlin")
    page.find("[name=comment]").send_keys("nightly DB maintenance")
    page.screenshot("recurring-form")
    page.click("#recurring-silence-form [type=submit]")
    shows(page, "Recurring silence saved")
    assert Silence.objects.get().recurrence == "FREQ=WEEKLY;BYDAY=MO,WE"
    assert "Every Mon, Wed 22:00–23:30 (Europe/Berlin)" in page.find("#result_list").text
    page.screenshot("silence-list")


def test_an_operator_escalates_now_from_the_page_and_the_button_goes_at_the_last_tier(page: Page, operator, incident):
    from integrations.models import IncidentNotification, NotificationRule

    rule = NotificationRule.objects.filter(severity=incident.severity).first()
    rule.escalation_tiers = [{"channels": ["email"], "recipients": ["lead@example.com"]}]
    rule.escalation_repeat = 0
    rule.save()
    IncidentNotification.objects.create(incident=incident, rule=rule, tier=0)
    open_incident(page.login(operator), incident)
    page.find("input[name=comment]").send_keys("Nobody answered the page")
    page.screenshot("escalate-now")
    page.click("#do-escalate")
    shows(page, f"Incident #{incident.pk}: escalated, tier 1 of its notification rule is notified.")
    timeline = page.find("#timeline").text
    assert "Escalated by otto-operator from the incident page: tier 1 notified." in timeline
    assert "Nobody answered the page" in timeline
    assert not page.find_all("#do-escalate")  # the last tier, no repeats: nothing left to escalate to
    page.screenshot("escalated")
