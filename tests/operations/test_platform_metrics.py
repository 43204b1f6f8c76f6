"""The platform-health gauges the PrometheusRule alerts on (deploy/kubernetes): the worker
heartbeat, the detection tick, the outbox backlog — read at scrape time, whoever answers."""

from __future__ import annotations

import datetime as dt
from itertools import count

import pytest
from django.utils import timezone

from incidents.models import DetectionRule
from integrations.metrics import OutboxCollector
from integrations.models import Channel, Delivery, DeliveryStatus
from operations.platform_metrics import PlatformHealthCollector
from signals_app.metrics import exposition

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
_keys = count()


def values(collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_the_heartbeat_gauge_is_when_a_worker_last_ran_the_heartbeat_task():
    from django.core.cache import cache

    from etl_monitor.health import HEARTBEAT_CACHE_KEY
    from etl_monitor.tasks import platform_heartbeat

    cache.delete(HEARTBEAT_CACHE_KEY)
    assert values(PlatformHealthCollector())[("worker_heartbeat_timestamp_seconds", ())] == 0  # never ran
    before = timezone.now().timestamp()
    platform_heartbeat.apply()  # the real task body, as a worker runs it
    stamp = values(PlatformHealthCollector())[("worker_heartbeat_timestamp_seconds", ())]
    assert before <= stamp <= timezone.now().timestamp()


def test_detection_gauges_say_when_rules_were_last_evaluated_and_how_many_are_overdue():
    DetectionRule.objects.update(enabled=False)
    assert ("detection_last_evaluated_timestamp_seconds", ()) not in values(PlatformHealthCollector(lambda: NOW))
    rules = list(DetectionRule.objects.all()[:3])
    assert len(rules) == 3
    for rule, evaluated, due in zip(
        rules,
        (NOW - dt.timedelta(minutes=1), NOW - dt.timedelta(minutes=9), None),
        (NOW + dt.timedelta(seconds=30), NOW - dt.timedelta(minutes=8), NOW - dt.timedelta(minutes=1)),
        strict=True,
    ):
        DetectionRule.objects.filter(pk=rule.pk).update(enabled=True, last_evaluated_at=evaluated, next_due_at=due)
    gauges = values(PlatformHealthCollector(lambda: NOW))
    assert gauges[("detection_last_evaluated_timestamp_seconds", ())] == (NOW - dt.timedelta(minutes=1)).timestamp()
    assert gauges[("detection_rules_overdue", ())] == 1  # due 8 min ago; 1 min ago is within the grace


def _delivery(channel: Channel, status: str, waited: dt.timedelta) -> Delivery:
    return Delivery.objects.create(
        channel=channel,
        purpose="TEST",
        target="ops@example.com",
        key=f"metrics-{next(_keys)}",
        payload={"subject": "x", "text": "x"},
        payload_digest="x",
        status=status,
        next_attempt_at=NOW - waited,
    )


def test_outbox_gauges_count_the_backlog_and_the_oldest_due_wait():
    channel = Channel.objects.create(name="mail", kind="EMAIL")
    gauges = values(OutboxCollector(lambda: NOW))
    assert gauges[("outbox_oldest_due_seconds", ())] == 0
    assert all(v == 0 for (name, _), v in gauges.items() if name == "outbox_deliveries")
    _delivery(channel, DeliveryStatus.PENDING, dt.timedelta(minutes=3))
    _delivery(channel, DeliveryStatus.FAILED, dt.timedelta(minutes=12))  # will be retried: backlog
    _delivery(channel, DeliveryStatus.PENDING, -dt.timedelta(minutes=5))  # not due yet
    _delivery(channel, DeliveryStatus.SENDING, dt.timedelta(minutes=1))
    _delivery(channel, DeliveryStatus.SENT, dt.timedelta(hours=5))  # history, not backlog
    _delivery(channel, DeliveryStatus.GAVE_UP, dt.timedelta(hours=5))
    gauges = values(OutboxCollector(lambda: NOW))
    assert gauges[("outbox_oldest_due_seconds", ())] == 12 * 60
    by_status = {dict(labels)["status"]: v for (name, labels), v in gauges.items() if name == "outbox_deliveries"}
    assert by_status == {"PENDING": 2, "SENDING": 1, "FAILED": 1}


def test_the_gauges_are_on_metrics():
    body = exposition()[0].decode()
    for name in (
        "worker_heartbeat_timestamp_seconds",
        "detection_rules_overdue",
        "outbox_deliveries",
        "outbox_oldest_due_seconds",
    ):
        assert f"\n{name}" in body, name
