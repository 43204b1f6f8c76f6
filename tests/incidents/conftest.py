from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections, transaction

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


@contextmanager
def rule_held_by_another_worker(rule: DetectionRule) -> Iterator[None]:
    """While inside, another connection (a thread) holds the rule's row lock in an open
    transaction, as a second worker evaluating it would (PostgreSQL)."""
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            DetectionRule.objects.select_for_update().get(pk=rule.pk)
            ready.set()
            release.wait(timeout=10)
        connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(timeout=10)
    try:
        yield
    finally:
        release.set()
        thread.join(timeout=10)
