"""The screens the documentation shows, walked on the demo data by the role that uses each one.

In the normal suite these tests check that every screen renders what the docs say it shows (the
overview's tiles, a loader's charts, the incident timeline, the version diff, the import preview,
the channels) and save their screenshots among the artifacts. ``make screenshots`` runs them with
``DOCS_SCREENSHOTS=docs/img``: the same screenshots are then written as the named PNGs the docs
embed, so an image never shows an old screen. The demo is loaded with a fixed seed; each slot's
run is the same whenever it is loaded, so the images change only where the screens (or the clock)
do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl_monitor.demo import DemoReport, demo_generate
from incidents.models import Incident, IncidentStatus
from loaders.models import LoaderVersion, VersionState
from loaders.spreadsheets import spreadsheet_write
from tests.browser.conftest import Page

SEED = 18


@pytest.fixture(autouse=True)
def _no_notifications(settings: Any) -> None:
    settings.NOTIFICATIONS_ENABLED = False  # the screens are under test, not the outbox


@pytest.fixture
def demo(transactional_db: Any) -> DemoReport:
    return demo_generate(loaders=12, days=30, seed=SEED)  # the loader page's chart spans 30 days


def loader_in(demo: DemoReport, profile: str) -> str:
    return next(code for code, p in demo.profiles.items() if p == profile)


def test_the_overview_shows_the_fleet_at_a_glance(page: Page, viewer: Any, demo: DemoReport) -> None:
    page.login(viewer)  # lands on the overview
    assert page.find("h1").text == "Operations overview"
    assert len(page.find_all("article.ops-tile")) >= 12  # and the platform's own STATS-* loaders
    assert "Failed" in page.find(f'article[data-loader="{loader_in(demo, "failing")}"]').text
    assert "Missed" in page.find(f'article[data-loader="{loader_in(demo, "late")}"]').text
    # Sparklines are drawn as their tiles come into view: the most urgent ones, at the top.
    spark = f'.ops-tile[data-loader="{loader_in(demo, "failing")}"] .ops-spark'
    page.wait_for(lambda d: page.find(spark).get_attribute("data-series"))
    assert page.js("return arguments[0].uplot.data[0].length", page.find(spark)) >= 10
    page.screenshot("overview", docs="overview")


def test_a_loader_page_charts_its_runs_against_the_contract(page: Page, viewer: Any, demo: DemoReport) -> None:
    code = loader_in(demo, "slow")
    page.login(viewer).open(f"/admin/ops/loaders/{code}/")
    for chart in ("#chart-duration", "#chart-rows"):
        page.wait_for(lambda d, chart=chart: page.find(chart).get_attribute("data-series"))
        assert page.find(chart).find_element("css selector", "canvas")
        assert int(page.find(chart).get_attribute("data-points")) >= 28  # a month of daily runs
    assert len(page.find_all("#runs tbody tr")) >= 10
    page.screenshot("loader-page", docs="loader-page")


def test_the_incident_list_shows_what_is_open_and_acknowledged(page: Page, operator: Any, demo: DemoReport) -> None:
    page.login(operator).open("/admin/incidents/incident/")
    assert "Showing open and acknowledged incidents" in page.find("#incident-list-scope").text
    statuses = [cell.text for cell in page.find_all("td.field-status_badge")]
    active = Incident.objects.filter(status__in=[IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED])
    assert len(statuses) == active.count() >= 4
    assert {"Open", "Acknowledged"} <= set(statuses)
    page.screenshot("incident-list", docs="incident-list")


def test_an_incident_page_tells_its_story_on_the_timeline(page: Page, operator: Any, demo: DemoReport) -> None:
    incident = Incident.objects.get(loader__loader_code=loader_in(demo, "slow"), status=IncidentStatus.ACKNOWLEDGED)
    page.login(operator).open(f"/admin/incidents/incident/{incident.pk}/change/")
    page.wait_for(lambda d: d.find_elements("css selector", "#incident-chart[data-drawn=true] canvas"))
    timeline = page.find("#timeline").text
    assert "Acknowledged by demo-operator" in timeline
    assert incident.external_key and incident.external_key in page.text()
    page.screenshot("incident-page", docs="incident-page")


def test_an_approver_reviews_the_pending_version_against_the_active_one(
    page: Page, approver: Any, demo: DemoReport
) -> None:
    pending = LoaderVersion.objects.get(loader__loader_code="SALES-DAILY", state=VersionState.PENDING_APPROVAL)
    page.login(approver).open(f"/admin/loaders/loaderversion/{pending.pk}/change/")
    assert "Changes compared with the active version v1" in page.text()
    row = page.find("#content-main table tbody tr").text
    assert "45" in row and "60" in row
    assert page.find_all("form[action*='/approve/'] button[type=submit]")
    page.screenshot("version-review", docs="version-review")


def test_an_editor_previews_an_import_before_anything_is_written(
    page: Page, editor: Any, demo: DemoReport, tmp_path: Path
) -> None:
    headers = ["loader_code", "name", "owner", "schedule_cron", "schedule_timezone", "grace_minutes"]
    rows = [
        ["INVENTORY-HOURLY", "Hourly inventory snapshot", "data-platform", "5 * * * *", "UTC", 15],
        ["RETURNS-NIGHTLY", "Nightly returns", "logistics", "15 1 * * *", "Europe/Berlin", 30],
    ]
    upload = tmp_path / "loaders.xlsx"
    upload.write_bytes(spreadsheet_write(headers=headers, rows=rows, file_format="xlsx"))
    page.login(editor).open("/admin/loaders/loader/import/")
    page.find("input[name=file]").send_keys(str(upload))
    page.click("input[type=submit][value='Preview import']")
    page.wait_for_text("rows read")
    text = page.text()
    assert "2 rows read: 1 new, 1 changed" in " ".join(text.split())
    assert "RETURNS-NIGHTLY" in text and "INVENTORY-HOURLY" in text
    assert page.find_all("input[type=submit][value^='Confirm import']")
    page.screenshot("import-preview", docs="import-preview")


def test_an_admin_sees_the_notification_channels(page: Page, admin_user: Any, demo: DemoReport) -> None:
    page.login(admin_user).open("/admin/integrations/channel/")
    names = [cell.text for cell in page.find_all("#result_list tbody th")]
    assert {"email", "slack", "jira"} <= set(names)
    page.screenshot("notification-channels", docs="notification-channels")
