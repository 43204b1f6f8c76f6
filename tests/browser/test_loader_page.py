"""A loader's operational page in a real browser, as a Viewer: reached from its overview tile,
charts drawn from the chart data with the expected range as a band, a HIDDEN field kept out."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.models import FieldProtection
from signals_app.models import RunStatus
from tests.browser.conftest import PHONE, Page
from tests.operations.conftest import make_loader, make_run, ops_team  # noqa: F401 - fixtures


@pytest.fixture
def charted(make_loader):  # noqa: F811 - the fixture imported above
    """SALES-CHART: twelve daily runs with an expected range, the last one failed."""
    now = timezone.now()
    loader = make_loader(
        "SALES-CHART", cron="", max_duration_minutes=30, expected_rows_min=100, expected_rows_max=900,
        connection_host="warehouse.internal", approved=now - dt.timedelta(days=20),
    )  # fmt: skip
    for days in range(12, 0, -1):
        make_run(loader, started=now - dt.timedelta(days=days), seconds=600 + days * 10, rows=300 + days * 20)
    make_run(loader, RunStatus.FAILED, started=now - dt.timedelta(hours=2), seconds=45, rows=None)
    return loader


def test_a_viewer_opens_a_loader_from_the_overview_and_sees_its_charts(page: Page, viewer, charted) -> None:
    page.login(viewer)
    page.click('article[data-loader="SALES-CHART"] h3 a')
    page.wait_for(lambda d: "/admin/ops/loaders/SALES-CHART/" in d.current_url)
    assert "Failed" in page.find("#status").text
    for chart in ("#chart-duration", "#chart-rows"):
        page.wait_for(lambda d, chart=chart: page.find(chart).get_attribute("data-series"))
        element = page.find(chart)
        assert element.find_element("css selector", "canvas")
        # The runs, the failed ones as dots, and the expected maximum and minimum that bound the band.
        assert element.get_attribute("data-series") == "4"
        assert page.js("return arguments[0].uplot.data[2].filter(v => v !== null).length", element) == 1
        assert element.get_attribute("data-points") == "13"
        assert element.get_attribute("data-approvals") == "1"
        assert page.js("return arguments[0].uplot.bands.length", element) == 1
    runs = page.find_all("#runs tbody tr a")
    assert len(runs) == 13 and "/admin/signals_app/run/" in runs[0].get_attribute("href")
    page.screenshot("loader-page")


def test_a_hidden_contract_field_stays_hidden_on_the_loader_page(page: Page, viewer, charted) -> None:
    FieldProtection.objects.create(model_label="loaders.loaderversion", field_name="connection_host", level="HIDDEN")
    page.login(viewer)
    page.open("/admin/ops/loaders/SALES-CHART/")
    assert "Target" in page.find("#contract").text
    assert "warehouse.internal" not in page.driver.page_source
    assert "Connection host" not in page.text()


def test_the_loader_page_fits_a_phone_without_horizontal_scrolling(page: Page, viewer, charted) -> None:
    page.login(viewer)
    page.viewport(PHONE).open("/admin/ops/loaders/SALES-CHART/")
    page.wait_for(lambda d: page.find("#chart-rows").get_attribute("data-series"))
    # Negative when a vertical scrollbar takes its width from the window: no sideways scrolling either way.
    assert page.horizontal_overflow() == 0
    page.screenshot("phone-loader-page")
