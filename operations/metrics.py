"""State gauges for ``/metrics``: read from the database when Prometheus scrapes, not counted.

A counter per gunicorn worker cannot say what is true *now* (how many incidents are open, which
loaders are late), and adding up one gauge per worker would multiply it by the number of workers.
So ``StateCollector`` is registered with ``signals_app.metrics.state_collector_register`` (at
``OperationsConfig.ready``) and runs once per scrape, in the worker that answers, with the
overview's own health rule (``operations.selectors``) and a fixed number of queries.

Labels come from the registry and stored rows only (loader codes, team names, fixed status words),
never from a request. Loader names are left out; a team is left blank when the ``owner`` field is
HIDDEN (``fleet_state_read`` reads as the system, with no role's exemption).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from incidents.models import ACTIVE_STATUSES
from loaders.models import Severity
from operations.selectors import FAILED_RUN, FleetState, Health, fleet_state_read
from signals_app.models import RunStatus

logger = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, *FAILED_RUN)


def _families(state: FleetState) -> Iterator[Metric]:
    """The gauges of ``state``. Every status of a series set is written, 0 included, so a panel's
    ratio or a ``== 1`` alert has a value instead of a gap when a loader changes status."""
    loader_status = GaugeMetricFamily(
        "loader_status",
        "1 for the loader's current overview status, 0 for the others.",
        labels=["loader_code", "owner_team", "status"],
    )
    by_status = dict.fromkeys(Health.values, 0)
    for health in state.healths:
        by_status[health.status] += 1
        for status in Health.values:
            loader_status.add_metric([health.code, health.team or "", status], 1 if health.status == status else 0)
    yield loader_status

    loaders_by_status = GaugeMetricFamily(
        "loaders_by_status", "Loaders in each overview status now.", labels=["status"]
    )
    for status, count in by_status.items():
        loaders_by_status.add_metric([status], count)
    yield loaders_by_status

    incidents_open = GaugeMetricFamily(
        "incidents_open", "Incidents open or acknowledged now, by severity and status.", labels=["severity", "status"]
    )
    for severity in Severity.values:
        for status in ACTIVE_STATUSES:
            incidents_open.add_metric([severity, status.value], state.incidents_open.get((severity, status), 0))
    yield incidents_open

    runs_24h = GaugeMetricFamily(
        "loader_runs_24h",
        "Finished runs started in the last 24 hours, by loader and final status.",
        labels=["loader_code", "owner_team", "status"],
    )
    # The team label follows loader_status's rule (blank when hidden), so a panel filters both alike.
    for health in sorted(state.healths, key=lambda h: h.code):
        for status in FINISHED:
            runs_24h.add_metric(
                [health.code, health.team or "", status.value], state.runs_24h.get((health.code, status), 0)
            )
    yield runs_24h


class StateCollector:
    """A prometheus_client collector (``collect`` only: registering it must not query).

    ``clock`` says what "now" is (the wall clock; a test gives a fixed moment)."""

    def __init__(self, clock: Callable[[], dt.datetime] = timezone.now) -> None:
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("metrics_state_up", "1 when the state gauges were read from the database, 0 if not.")
        try:
            families = list(_families(fleet_state_read(now=self.clock())))
        except DatabaseError:
            # The counters are still worth serving while the database is away; say the state is missing.
            logger.exception("metrics: the state gauges could not be read")
            families = []
        up.add_metric([], 1 if families else 0)
        yield from families
        yield up
