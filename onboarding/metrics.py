"""The checklist on ``/metrics``, read when Prometheus scrapes (as ``operations.metrics``):

- ``onboarding_step_done{step}``: 1 while the step's live condition holds, 0 otherwise;
- ``onboarding_step_first_done_timestamp_seconds{step}``: when it was first seen done (0: never).

So "onboarding completion" is ``avg(onboarding_step_done)`` and time to value is the last first-done
timestamp minus the first. A scrape records a step first seen done like a render of the checklist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from onboarding.models import Step, StepRecord
from onboarding.services import checklist_progress

logger = logging.getLogger(__name__)


class OnboardingCollector:
    """A prometheus_client collector (``collect`` only: registering it must not query)."""

    def collect(self) -> Iterator[Metric]:
        try:
            checklist = checklist_progress(base_url=settings.ETL_MONITOR_BASE_URL.rstrip("/"))
            first = {r.step: r.first_done_at for r in StepRecord.objects.all()}
        except DatabaseError:
            logger.exception("metrics: the onboarding gauges could not be read")
            return
        done = GaugeMetricFamily(
            "onboarding_step_done", "1 while the onboarding checklist's step is done, 0 if not.", labels=["step"]
        )
        first_done = GaugeMetricFamily(
            "onboarding_step_first_done_timestamp_seconds",
            "When the onboarding step was first seen done (Unix time; 0 if never).",
            labels=["step"],
        )
        done_steps = checklist.done_steps
        for step in Step:
            done.add_metric([step.value], 1 if step in done_steps else 0)
            at = first.get(step.value)
            first_done.add_metric([step.value], at.timestamp() if at else 0)
        yield done
        yield first_done
