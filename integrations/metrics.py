"""The notification outbox's backlog on ``/metrics``, for the EtlMonitorOutboxBacklog alert.

Read from the database when Prometheus scrapes (registered with
``signals_app.metrics.state_collector_register``), so every web worker reports the same values:

- ``outbox_deliveries{status}``: deliveries waiting or in flight (PENDING, SENDING, FAILED — which
  will be retried). Sent and given-up deliveries are history, not backlog, and are not counted.
- ``outbox_oldest_due_seconds``: how long the oldest due delivery has waited (0 when none).

Both queries use the (status, next_attempt_at) index.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from integrations.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

BACKLOG = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED)


def _outbox(now: dt.datetime) -> Iterator[Metric]:
    counts = dict.fromkeys(BACKLOG, 0)
    for row in Delivery.objects.filter(status__in=BACKLOG).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    deliveries = GaugeMetricFamily(
        "outbox_deliveries", "Deliveries waiting or in flight, by status.", labels=["status"]
    )
    for status, count in counts.items():
        deliveries.add_metric([status.value], count)
    yield deliveries
    due = Delivery.objects.filter(
        status__in=(DeliveryStatus.PENDING, DeliveryStatus.FAILED), next_attempt_at__lte=now
    ).aggregate(oldest=Min("next_attempt_at"))["oldest"]
    oldest = GaugeMetricFamily(
        "outbox_oldest_due_seconds", "How long the oldest due delivery has waited to be sent (0 when none)."
    )
    oldest.add_metric([], (now - due).total_seconds() if due else 0)
    yield oldest


class OutboxCollector:
    """A prometheus_client collector (``collect`` only); ``clock`` says what "now" is."""

    def __init__(self, clock: Callable[[], dt.datetime] = timezone.now) -> None:
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(_outbox(self.clock()))
        except DatabaseError:
            logger.exception("metrics: the outbox gauges could not be read")
            return
        yield from families
