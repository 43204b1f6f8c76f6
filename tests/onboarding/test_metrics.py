"""``onboarding_step_done{step}`` and ``onboarding_step_first_done_timestamp_seconds{step}`` on /metrics:
live state at each scrape, and the first-done time a scrape records like a render does."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

from loaders import services
from onboarding.metrics import OnboardingCollector
from onboarding.models import Step, StepRecord
from signals_app.metrics import exposition

pytestmark = pytest.mark.django_db


def gauges() -> dict[str, dict[str, float]]:
    """metric name → {step: value}, as /metrics serves them."""
    body, _ = exposition()
    result: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name.startswith("onboarding_"):
            for sample in family.samples:
                result.setdefault(sample.name, {})[sample.labels["step"]] = sample.value
    return result


def test_every_step_is_a_series_0_until_done(settings: Any) -> None:
    settings.GRAFANA_URL = ""
    values = gauges()
    assert values["onboarding_step_done"] == dict.fromkeys(Step.values, 0.0)
    assert values["onboarding_step_first_done_timestamp_seconds"] == dict.fromkeys(Step.values, 0.0)


def test_a_done_step_reads_1_and_its_first_done_time_is_recorded_by_the_scrape(editor: User, settings: Any) -> None:
    settings.GRAFANA_URL = ""
    services.team_upsert(user=editor, slug="finance", data={"name": "Finance"})
    values = gauges()
    assert values["onboarding_step_done"]["team"] == 1.0
    assert values["onboarding_step_done"]["loader"] == 0.0
    first = StepRecord.objects.get(step=Step.TEAM).first_done_at
    assert values["onboarding_step_first_done_timestamp_seconds"]["team"] == pytest.approx(first.timestamp())


def test_the_served_metrics_page_has_the_gauge(client: Any, settings: Any) -> None:
    settings.GRAFANA_URL = "https://grafana.example.com"
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'onboarding_step_done{step="dashboards"} 1.0' in body


def test_a_database_error_leaves_the_gauges_out_instead_of_failing_the_scrape(monkeypatch: Any) -> None:
    from django.db import DatabaseError

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("the database is away")

    monkeypatch.setattr("django.db.backends.utils.CursorWrapper.execute", refuse)
    assert list(OnboardingCollector().collect()) == []
