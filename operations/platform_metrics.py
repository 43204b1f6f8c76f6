"""The platform's own health on ``/metrics``, for the alerts in deploy/kubernetes (PrometheusRule).

Read from the database and the cache when Prometheus scrapes (like ``operations.metrics``), so the
values are the same whichever web worker answers and however many there are:

- ``worker_heartbeat_timestamp_seconds``: when a worker last ran the 30-second heartbeat task (beat
  and a worker are both alive). Absent when the cache cannot be read.
- ``detection_last_evaluated_timestamp_seconds``: the latest evaluation of any enabled rule; absent
  while no rule is enabled. ``detection_rules_overdue``: enabled rules due more than two minutes ago.

The outbox's backlog is measured beside the outbox (``integrations.metrics``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator

from django.db import DatabaseError
from django.db.models import Count, Max, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from etl_monitor.health import heartbeat_last
from incidents.models import DetectionRule

logger = logging.getLogger(__name__)

OVERDUE_AFTER = dt.timedelta(minutes=2)


def _heartbeat() -> Iterator[Metric]:
    try:
        last = heartbeat_last()
    except Exception:  # noqa: BLE001 - a cache outage must not fail the scrape; the gauge is absent then
        logger.warning("metrics: the worker heartbeat could not be read from the cache")
        return
    family = GaugeMetricFamily(
        "worker_heartbeat_timestamp_seconds", "When a worker last ran the heartbeat task (Unix time; 0 if never)."
    )
    family.add_metric([], last.timestamp() if last else 0)
    yield family


def _detection(now: dt.datetime) -> Iterator[Metric]:
    rules = DetectionRule.objects.filter(enabled=True).aggregate(
        last=Max("last_evaluated_at"),
        overdue=Count("id", filter=Q(next_due_at__lt=now - OVERDUE_AFTER)),
        enabled=Count("id"),
    )
    if rules["enabled"]:
        last = GaugeMetricFamily(
            "detection_last_evaluated_timestamp_seconds",
            "The latest evaluation of any enabled detection rule (Unix time; 0 if none yet).",
        )
        last.add_metric([], rules["last"].timestamp() if rules["last"] else 0)
        yield last
    overdue = GaugeMetricFamily("detection_rules_overdue", "Enabled rules due for evaluation over two minutes ago.")
    overdue.add_metric([], rules["overdue"])
    yield overdue


class PlatformHealthCollector:
    """A prometheus_client collector (``collect`` only); ``clock`` says what "now" is."""

    def __init__(self, clock: Callable[[], dt.datetime] = timezone.now) -> None:
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from _heartbeat()
        try:
            families = list(_detection(now))
        except DatabaseError:
            logger.exception("metrics: the platform health gauges could not be read")
            return
        yield from families
