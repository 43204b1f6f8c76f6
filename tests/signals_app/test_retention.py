"""Retention removes exactly what is older than the limit; on PostgreSQL by dropping day partitions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from signals_app.models import Signal, SignalKey
from signals_app.retention import signal_partitions, signals_partitions_ensure, signals_retention_enforce


def make_signals(loader, ages_in_days: list[float], now: dt.datetime) -> None:
    for i, age in enumerate(ages_in_days):
        Signal.objects.create(
            loader=loader,
            signal_key=f"k{i}",
            validation_status="SUCCESS",
            captured_at=now - dt.timedelta(days=age),
            received_at=now,
            idempotency_key=f"key-{i}",
        )
        SignalKey.objects.create(loader=loader, key=f"key-{i}", created_at=now - dt.timedelta(days=age))


def test_it_removes_exactly_what_is_older_than_the_limit(active_loader):
    now = timezone.now()
    make_signals(active_loader, [45, 31, 30.01, 29.99, 10, 0], now)
    removed = signals_retention_enforce(now=now, days=30)
    left = sorted(round((now - s.captured_at).total_seconds() / 86400, 2) for s in Signal.objects.all())
    assert left == [0.0, 10.0, 29.99]
    assert removed["rows_deleted"] + 0 >= 0
    assert SignalKey.objects.count() == 3
    assert signals_retention_enforce(now=now, days=30)["rows_deleted"] == 0  # idempotent


@pytest.mark.services
def test_on_postgresql_old_days_are_dropped_as_partitions(require_postgres, active_loader):
    now = timezone.now()
    signals_partitions_ensure(today=now.date(), days_before=40, days_ahead=2)
    make_signals(active_loader, [39.5, 35, 31, 29, 1], now)
    before = set(signal_partitions())
    assert len(before) >= 43
    removed = signals_retention_enforce(now=now, days=30)
    after = set(signal_partitions())
    cutoff_day = (now - dt.timedelta(days=30)).date()
    assert all(name >= f"signals_app_signal_p{cutoff_day:%Y%m%d}" for name in after)
    assert removed["partitions_dropped"] == len(before - after) >= 9
    assert sorted(round((now - s.captured_at).total_seconds() / 86400) for s in Signal.objects.all()) == [1, 29]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM signals_app_signal_default")
        assert cursor.fetchone()[0] == 0


@pytest.mark.services
def test_partitions_for_the_coming_days_exist_and_receive_rows(require_postgres, active_loader):
    signals_partitions_ensure(days_ahead=3)
    today = timezone.now().date()
    assert f"signals_app_signal_p{today:%Y%m%d}" in signal_partitions()
    Signal.objects.create(
        loader=active_loader,
        signal_key="x",
        validation_status="SUCCESS",
        captured_at=timezone.now(),
        received_at=timezone.now(),
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM signals_app_signal_p{today:%Y%m%d}")
        assert cursor.fetchone()[0] == 1
