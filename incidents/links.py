"""Runs and incidents, linked both ways for the API: the runs that fired an incident, and the
incidents a run fired. Nothing stores the link; it follows from what detection recorded.

- A kind that judged one run (duration, volume) names it in the incident's snapshot (``run_id``).
- "Run failed" counts the loader's failed runs in the rule's window: the runs that fired it are
  those that finished between ``first_seen - window`` and ``last_seen``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Q, QuerySet

from incidents.models import Incident
from signals_app.models import Run, RunStatus

FAILED_RUN_KIND = "run_failed"
FAILED_STATUSES = (RunStatus.FAILED, RunStatus.TIMED_OUT)
LINKS_MAX = 100  # an incident that fired for weeks: the newest runs, not all of them


def _named_run_id(incident: Incident) -> uuid.UUID | None:
    value = incident.metrics.get("run_id") if isinstance(incident.metrics, dict) else None
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:  # an old or odd snapshot names no run
        return None


def incident_runs(incident: Incident) -> QuerySet[Run]:
    """The runs that fired ``incident``, newest first (at most LINKS_MAX)."""
    runs = Run.objects.filter(loader_id=incident.loader_id).select_related("loader")
    if incident.loader_id is None:
        return runs.none()
    if (run_id := _named_run_id(incident)) is not None:
        return runs.filter(run_id=run_id)
    if incident.rule is None or incident.rule.kind != FAILED_RUN_KIND:
        return runs.none()
    since = incident.first_seen - dt.timedelta(seconds=incident.rule.window_seconds)
    failed = runs.filter(status__in=FAILED_STATUSES, finished_at__gte=since, finished_at__lte=incident.last_seen)
    return failed.order_by("-finished_at", "-id")[:LINKS_MAX]


def incidents_of_run(run: Run) -> QuerySet[Incident]:
    """The incidents ``run`` fired: those whose snapshot names it, and for a failed run the
    loader's "run failed" incidents whose window held its end."""
    condition = Q(metrics__run_id=str(run.run_id))
    if run.status in FAILED_STATUSES and run.finished_at is not None:
        candidates = Incident.objects.filter(
            loader_id=run.loader_id, rule__kind=FAILED_RUN_KIND, last_seen__gte=run.finished_at
        ).select_related("rule")
        ids = [
            incident.pk
            for incident in candidates.only("pk", "first_seen", "rule__window_seconds")[:LINKS_MAX]
            if incident.first_seen - dt.timedelta(seconds=incident.rule.window_seconds) <= run.finished_at
        ]
        condition |= Q(pk__in=ids)
    return Incident.objects.filter(condition)
