from __future__ import annotations

import datetime as dt

import pytest

from incidents.models import DetectionRule
from signals_app.models import Run, Signal

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)  # in the past: people act "now", after it


@pytest.fixture(autouse=True)
def _detection_only(settings):
    """These tests read detection's own timeline; tests/integrations cover it with notifications."""
    settings.NOTIFICATIONS_ENABLED = False


@pytest.fixture
def rule_factory(db):
    def make(kind: str, **fields) -> DetectionRule:
        fields.setdefault("name", f"{kind} rule {DetectionRule.objects.count()}")
        return DetectionRule.objects.create(kind=kind, **fields)

    return make


def add_signals(loader, *, failed: int, ok: int, at: dt.datetime = NOW, key: str = "check", value=None) -> None:
    rows = [
        Signal(
            loader=loader,
            signal_key=key,
            validation_status="FAILED" if i < failed else "SUCCESS",
            captured_at=at - dt.timedelta(seconds=30),
            received_at=at,
            signal_value="" if value is None else str(value),
            value_number=value,
        )
        for i in range(failed + ok)
    ]
    Signal.objects.bulk_create(rows)


def add_run(loader, *, status="SUCCEEDED", started: dt.datetime, seconds: float | None = 60, rows_written=None):
    finished = started + dt.timedelta(seconds=seconds) if seconds is not None else None
    return Run.objects.create(
        loader=loader,
        status=status,
        started_at=started,
        finished_at=finished,
        duration_seconds=seconds,
        rows_written=rows_written,
    )
