"""The backtest in a real browser: an Admin tries changed settings on the rule form without saving
them, and a Viewer runs the rule's backtest page."""

from __future__ import annotations

import pytest
from django.utils import timezone

from incidents.models import DetectionRule
from tests.browser.conftest import Page
from tests.incidents.test_backtest import add_lag_signals


@pytest.fixture(autouse=True)
def _no_notifications(settings) -> None:
    settings.NOTIFICATIONS_ENABLED = False


@pytest.fixture
def lag_rule(active_loader) -> DetectionRule:
    add_lag_signals(active_loader, 1, end=timezone.now())
    return DetectionRule.objects.create(
        name="lag watch",
        kind="metric_threshold",
        params={"signal_key": "lag"},
        threshold=10,
        window_seconds=3600,
        interval_seconds=3600,
    )


def body(page: Page) -> str:
    """The page's text once it has loaded completely (stylesheets and scripts too)."""
    page.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")
    return page.js("return document.body.innerText")


def test_an_admin_backtests_changed_settings_without_saving(page: Page, admin_user, lag_rule):
    page.login(admin_user).open(f"/admin/incidents/detectionrule/{lag_rule.pk}/change/")
    threshold = page.find("#id_threshold")
    threshold.clear()
    threshold.send_keys("20")
    days = page.find("#id_backtest_days")
    days.clear()
    days.send_keys("2")
    page.click("input[name=_backtest]")
    page.wait_for(lambda d: d.find_elements("css selector", "#backtest-result"))
    assert "what these settings would have opened" in body(page)
    assert page.find("#id_threshold").get_attribute("value") == "20"
    page.screenshot("draft-backtest")
    lag_rule.refresh_from_db()
    assert lag_rule.threshold == 10, "backtesting does not save"


def test_a_viewer_runs_the_rules_backtest_page(page: Page, viewer, lag_rule):
    page.login(viewer).open(f"/admin/incidents/detectionrule/{lag_rule.pk}/change/")
    page.click("#backtest-link")
    page.wait_for(lambda d: d.find_elements("css selector", "#backtest-incidents"))
    assert "SALES-DAILY" in body(page)
    page.screenshot("rule-backtest")
