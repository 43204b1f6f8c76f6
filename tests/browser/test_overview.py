"""The operations overview in a real browser, as a Viewer: every status in words, the status
filter in the URL, sparklines drawn from data, a HIDDEN field kept out, a phone without sideways
scrolling."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.models import FieldProtection
from signals_app.models import RunStatus
from tests.browser.conftest import PHONE, Page
from tests.operations.conftest import make_loader, make_run, ops_team  # noqa: F401 - fixtures

WORDS = {
    "OK-ONE": "OK",
    "RUNNING-ONE": "Running",
    "FAILED-ONE": "Failed",
    "MISSED-ONE": "Missed",
    "LATE-ONE": "Late",
    "PAUSED-ONE": "Paused",
    "DRAFT-ONE": "No active version",
}


@pytest.fixture
def fleet(make_loader):  # noqa: F811 - the fixture imported above
    """One loader in each state, each with a few finished runs for its sparkline."""
    now = timezone.now()
    loaders = {
        "OK-ONE": make_loader("OK-ONE", cron=""),
        "RUNNING-ONE": make_loader("RUNNING-ONE", cron=""),
        "FAILED-ONE": make_loader("FAILED-ONE", cron=""),
        "MISSED-ONE": make_loader("MISSED-ONE", cron="0 * * * *", grace=5),
        "LATE-ONE": make_loader("LATE-ONE", cron="", sla=60),
        "PAUSED-ONE": make_loader("PAUSED-ONE", paused=True),
        "DRAFT-ONE": make_loader("DRAFT-ONE", active=False),
    }
    for loader in loaders.values():
        for hours in (6, 5, 4, 3):
            make_run(loader, started=now - dt.timedelta(hours=hours), seconds=60 * hours, rows=100 * hours)
    make_run(loaders["OK-ONE"], started=now - dt.timedelta(minutes=10))
    make_run(loaders["RUNNING-ONE"], RunStatus.RUNNING, started=now - dt.timedelta(minutes=2))
    make_run(loaders["FAILED-ONE"], RunStatus.FAILED, started=now - dt.timedelta(minutes=20))
    return loaders


def tile_text(page: Page, code: str) -> str:
    return page.find(f'article[data-loader="{code}"]').text


def test_a_viewer_sees_every_status_in_words_and_sparklines_drawn_from_runs(page: Page, viewer, fleet) -> None:
    page.login(viewer)  # the login lands on /admin/: the overview
    assert page.find("h1").text == "Operations overview"
    for code, word in WORDS.items():
        assert word in tile_text(page, code), code
    page.wait_for(lambda d: page.find('article[data-loader="OK-ONE"] .ops-spark').get_attribute("data-series"))
    spark = page.find('article[data-loader="OK-ONE"] .ops-spark')
    assert spark.find_element("css selector", "canvas")
    assert spark.get_attribute("data-series") == "2"  # duration and rows
    assert page.js("return arguments[0].uplot.data[0].length", spark) == 5  # its five finished runs
    page.screenshot("overview")


def test_the_status_filter_keeps_failed_loaders_and_survives_a_reload(page: Page, viewer, fleet) -> None:
    page.login(viewer)
    from selenium.webdriver.support.ui import Select

    Select(page.find("#overview-filters select[name=status]")).select_by_value("failed")
    page.click("#overview-filters button[type=submit]")
    page.wait_for(lambda d: "status=failed" in d.current_url)
    page.driver.refresh()
    codes = [el.get_attribute("data-loader") for el in page.find_all("article.ops-tile")]
    assert codes == ["FAILED-ONE"]
    assert "status=failed" in page.driver.current_url
    page.screenshot("filtered-failed")


def test_a_hidden_loader_name_stays_hidden_on_the_overview(page: Page, viewer, fleet) -> None:
    FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    page.login(viewer)
    assert "OK-ONE" in page.text()
    assert "OK-ONE job" not in page.text()
    assert "OK-ONE job" not in page.driver.page_source


def test_the_overview_fits_a_phone_without_horizontal_scrolling(page: Page, viewer, fleet) -> None:
    page.login(viewer)
    page.viewport(PHONE).open("/admin/")
    page.js("document.getElementById('loader-grid').scrollIntoView()")  # sparklines draw when seen
    page.wait_for(lambda d: page.find_all(".ops-spark canvas"))
    # Negative when a vertical scrollbar takes its width from the window: no sideways scrolling either way.
    assert page.horizontal_overflow() == 0
    page.screenshot("phone-overview")
