"""An anomaly incident read in a real browser: its Evidence panel and band chart, the version line's
link, and the loader page's anomaly chart it links to. ``make screenshots`` writes the docs'
images of both (docs/img/anomaly-evidence.png, docs/img/anomaly-loader-band.png)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from incidents.anomaly.band import band_anchor
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from loaders import services
from loaders.models import Loader, LoaderVersion
from tests.browser.conftest import PHONE, Page
from tests.incidents.conftest import add_run
from tests.incidents.test_anomaly_rule import add_hourly_runs, hourly_rows


@pytest.fixture(autouse=True)
def _no_notifications(settings: Any) -> None:
    settings.NOTIFICATIONS_ENABLED = False


@pytest.fixture
def orders(new_loader: Any, editor: Any, approver: Any) -> Loader:
    """ORDERS-HOURLY: three weeks of hourly runs with a daily pattern and one spike four days ago,
    version 2 approved 42 minutes before the rows written dropped; the anomaly rule evaluated hourly
    over the last six days, as the scheduler would have."""
    loader = new_loader("ORDERS-HOURLY", schedule_cron="0 * * * *", schedule_timezone="UTC", expected_rows_max=20_000)
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=loader.open_version)
    )
    loader = Loader.objects.get(pk=loader.pk)
    now = (timezone.now() - dt.timedelta(minutes=2)).replace(minute=0, second=0, microsecond=0)
    spike = now - dt.timedelta(days=4, hours=5)

    def rows(at: dt.datetime, rng: Any) -> float:
        return hourly_rows(at.hour, rng) * (2.2 if at == spike else 1)

    add_hourly_runs(loader, now - dt.timedelta(days=21), now, value=rows)
    services.loader_edit(user=editor, loader=loader, data={"description": "Orders, with the new returns feed"})
    draft = Loader.objects.get(pk=loader.pk).open_version
    services.loader_version_approve(user=approver, version=services.loader_version_submit(user=editor, version=draft))
    LoaderVersion.objects.filter(loader=loader, number=1).update(decided_at=now - dt.timedelta(days=30))
    LoaderVersion.objects.filter(loader=loader, number=2).update(decided_at=now - dt.timedelta(minutes=41))
    rule = DetectionRule.objects.create(
        name="Rows written anomaly",
        kind="anomaly",
        params={"source": "rows_written"},
        threshold=None,
        interval_seconds=3600,
        severity="MEDIUM",
        message="{subject}: {series} {headline}",
    )
    at = now - dt.timedelta(days=6)
    while at < now:
        rule_evaluate(rule=rule, now=at + dt.timedelta(minutes=10))
        at += dt.timedelta(hours=1)
    add_run(loader, started=now, seconds=60, rows_written=2_150)
    rule_evaluate(rule=rule, now=now + dt.timedelta(minutes=1, seconds=30))
    return loader


def test_an_anomaly_incident_shows_its_evidence_and_band(page: Page, viewer: Any, orders: Loader) -> None:
    incident = Incident.objects.filter(loader=orders).order_by("-first_seen").first()
    assert incident.metrics["observed"] == 2_150
    page.login(viewer).open(f"/admin/incidents/incident/{incident.pk}/change/")
    page.wait_for(lambda d: d.find_elements("css selector", "#evidence-chart[data-drawn=true] canvas"))
    chart = page.find("#evidence-chart")
    assert int(chart.get_attribute("data-points")) >= 7 * 24
    assert int(chart.get_attribute("data-anomalies")) >= 2  # the spike four days ago and the drop
    evidence = page.find("#evidence").text
    assert "Began 42 minutes after version 2 was approved by" in evidence
    assert "2,150" in evidence
    page.screenshot_of("#evidence", "evidence", docs="anomaly-evidence")

    page.click("#evidence-version a")
    page.wait_for_text("Changes from version 1")
    assert "Orders, with the new returns feed" in page.find("#changes").text
    page.screenshot_of("#changes", "version-changes")

    page.open(f"/admin/incidents/incident/{incident.pk}/change/").click("#evidence-series-link")
    anchor = band_anchor(incident.rule_id, "ORDERS-HOURLY")
    page.wait_for(lambda d: d.find_elements("css selector", f"#{anchor} .ops-chart[data-drawn=true] canvas"))
    assert page.driver.current_url.endswith(f"#{anchor}")
    card = page.find(f"#{anchor}").text
    assert "Rows written anomaly: rows written" in card and "Anomalous" in card
    page.screenshot_of("#anomaly", "loader-band", docs="anomaly-loader-band")


def test_the_evidence_fits_a_phone(page: Page, operator: Any, orders: Loader) -> None:
    incident = Incident.objects.filter(loader=orders).order_by("-first_seen").first()
    page.login(operator).viewport(PHONE).open(f"/admin/incidents/incident/{incident.pk}/change/")
    page.wait_for(lambda d: d.find_elements("css selector", "#evidence-chart[data-drawn=true] canvas"))
    assert page.horizontal_overflow() == 0
    page.screenshot_of("#evidence", "evidence-phone")
