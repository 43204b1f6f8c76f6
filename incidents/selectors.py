"""Reads for the incident pages: what triggered an incident, its error text and its chart series.

Nothing here writes. The on-call page (``incidents.admin``) and its chart endpoint read through
these functions, so what a reader may see (contract fields their role hides, secrets in error
text) is decided in one place.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from etl_monitor.protection import MASK, policy_for, scrub
from incidents.models import ACTIVE_STATUSES, Incident
from loaders.models import LoaderVersion
from signals_app.models import Run, RunStatus, Signal, ValidationStatus

FAILED_RUN_STATUSES = (RunStatus.FAILED, RunStatus.TIMED_OUT)
RUN_KINDS = {"run_failed", "run_duration", "volume_out_of_range", "missed_run", "freshness"}
SIGNAL_KINDS = {"signal_failure_rate", "metric_threshold"}
TRIGGER_LIMIT = 10
LINKS_MAX = 100  # the API's links of an incident that fired for weeks: the newest runs, not all
SERIES_LIMIT = 2000
RATE_BUCKET_MINUTES = 10


def incidents_open() -> QuerySet[Incident]:
    """The incidents someone still has to act on (OPEN and ACKNOWLEDGED)."""
    return Incident.objects.filter(status__in=ACTIVE_STATUSES)


def contract_fields_hidden(user: Any) -> set[str]:
    """The loader contract fields ``user`` may not read (HIDDEN or MASKED for their role)."""
    policy = policy_for(user, LoaderVersion)
    return policy.hidden | policy.masked


def _kind(incident: Incident) -> str:
    return incident.rule.kind if incident.rule_id and incident.rule else ""


def _window(incident: Incident) -> tuple[dt.datetime, dt.datetime]:
    """From one rule window before the incident opened to when it was last seen."""
    seconds = incident.rule.window_seconds if incident.rule_id and incident.rule else 3600
    return incident.first_seen - dt.timedelta(seconds=seconds), incident.last_seen


def incident_triggering_runs(incident: Incident, limit: int = TRIGGER_LIMIT) -> list[Run]:
    """The runs that fired the incident, newest first (at most ``limit``).

    The run the kind named (``run_id`` in the snapshot) when there is one; for failed runs, the
    loader's failed runs in the rule's window up to the last time it fired; else the runs that
    share the incident's correlation id."""
    if incident.loader_id is None:
        return []
    runs = Run.objects.filter(loader_id=incident.loader_id)
    run_id = (incident.metrics or {}).get("run_id") if isinstance(incident.metrics, dict) else None
    if run_id:
        try:
            return list(runs.filter(run_id=run_id))
        except (ValidationError, ValueError):  # a malformed id in an old snapshot names no run
            return []
    kind = _kind(incident)
    since, until = _window(incident)
    if kind == "run_failed":
        found = runs.filter(status__in=FAILED_RUN_STATUSES, finished_at__gte=since, finished_at__lte=until)
    elif incident.correlation_id:
        found = runs.filter(correlation_id=incident.correlation_id)
    else:
        return []
    return list(found.order_by("-started_at")[:limit])


def incidents_of_run(run: Run) -> QuerySet[Incident]:
    """The incidents ``run`` fired: those whose snapshot names it, and for a failed run the
    loader's "run failed" incidents whose window held its end."""
    condition = Q(metrics__run_id=str(run.run_id))
    if run.status in FAILED_RUN_STATUSES and run.finished_at is not None:
        candidates = Incident.objects.filter(
            loader_id=run.loader_id, rule__kind="run_failed", last_seen__gte=run.finished_at
        ).select_related("rule")
        ids = [
            incident.pk
            for incident in candidates.only("pk", "first_seen", "rule__window_seconds")[:LINKS_MAX]
            if incident.first_seen - dt.timedelta(seconds=incident.rule.window_seconds) <= run.finished_at
        ]
        condition |= Q(pk__in=ids)
    return Incident.objects.filter(condition)


def incident_triggering_signals(incident: Incident) -> list[Signal]:
    """FAILED signals of the incident's loader in its window (signal rules and directly sent
    failures), newest first, at most ``TRIGGER_LIMIT``."""
    if incident.loader_id is None or _kind(incident) not in SIGNAL_KINDS | {"run_failed"}:
        return []
    since, until = _window(incident)
    signals = Signal.objects.filter(loader_id=incident.loader_id, captured_at__gte=since, captured_at__lte=until)
    key = (incident.rule.params or {}).get("signal_key") if incident.rule else None
    if _kind(incident) == "metric_threshold" and key:
        signals = signals.filter(signal_key=key)
    else:
        signals = signals.filter(validation_status=ValidationStatus.FAILED)
    return list(signals.order_by("-captured_at")[:TRIGGER_LIMIT])


def incident_error_text(incident: Incident, runs: list[Run]) -> str:
    """The error to show as a block: the newest triggering run's full error text, else the one the
    snapshot kept; anything that looks like a secret is masked."""
    text = next((run.error_text for run in runs if run.error_text), "")
    if not text and isinstance(incident.metrics, dict):
        text = str(incident.metrics.get("error") or "")
    return scrub(text) if text else ""


def incident_metrics_visible(incident: Incident, hidden: set[str]) -> dict[str, Any]:
    """The snapshot as this reader may see it: values taken from contract fields they may not read
    are masked."""
    metrics = dict(incident.metrics) if isinstance(incident.metrics, dict) else {"value": incident.metrics}
    from_contract = {
        "limit_seconds": "max_duration_minutes" if metrics.get("threshold") is None else None,
        "expected_min": "expected_rows_min",
        "expected_max": "expected_rows_max",
        "schedule": "schedule_cron",
        "timezone": "schedule_timezone",
        "grace_minutes": "grace_minutes",
    }
    for key, field in from_contract.items():
        if field and field in hidden and key in metrics:
            metrics[key] = MASK
    if metrics.get("error"):
        metrics["error"] = scrub(str(metrics["error"]))
    return metrics


def _epoch(moment: dt.datetime) -> float:
    return round(moment.timestamp(), 3)


def incident_series(
    incident: Incident, *, hidden: set[str], hours: int = 6, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The series the incident measured, ``hours`` either side of the moment it opened, for uPlot.

    ``x`` are epoch seconds; ``series`` one list of values per label (aligned with ``x``, None
    where a series has no point); ``threshold`` a line and ``band`` an expected range to draw
    (None when the reader may not see the contract value behind them); ``opened_at`` the moment
    it opened. Rules over signals chart the signals; every other loader incident charts the
    loader's run durations (failed runs as their own series), volume rules the rows written."""
    now = now or timezone.now()
    start = incident.first_seen - dt.timedelta(hours=hours)
    end = min(now, incident.first_seen + dt.timedelta(hours=hours))
    kind = _kind(incident)
    metrics = incident.metrics if isinstance(incident.metrics, dict) else {}
    rule_threshold = incident.rule.threshold if incident.rule else None
    result: dict[str, Any] = {
        "kind": kind,
        "opened_at": _epoch(incident.first_seen),
        "from": _epoch(start),
        "to": _epoch(end),
        "unit": "",
        "x": [],
        "series": [],
        "threshold": None,
        "band": None,
    }
    if incident.loader_id is None:
        return result
    if kind == "metric_threshold":
        params = incident.rule.params or {}
        signals = Signal.objects.filter(
            loader_id=incident.loader_id, captured_at__gte=start, captured_at__lte=end, value_number__isnull=False
        )
        if params.get("signal_key"):
            signals = signals.filter(signal_key=params["signal_key"])
        if params.get("metric_type"):
            signals = signals.filter(metric_type=params["metric_type"])
        rows = list(signals.order_by("captured_at").values_list("captured_at", "value_number")[:SERIES_LIMIT])
        label = params.get("signal_key") or params.get("metric_type") or "value"
        result.update(
            unit="",
            x=[_epoch(at) for at, _v in rows],
            series=[{"label": label, "values": [v for _at, v in rows]}],
            threshold=rule_threshold,
        )
        return result
    if kind == "signal_failure_rate":
        buckets: dict[dt.datetime, list[int]] = {}
        per_minute = (
            Signal.objects.filter(loader_id=incident.loader_id, captured_at__gte=start, captured_at__lte=end)
            .annotate(minute=TruncMinute("captured_at"))
            .values("minute")
            .annotate(total=Count("id"), failed=Count("id", filter=Q(validation_status=ValidationStatus.FAILED)))
            .order_by("minute")
        )
        for row in per_minute:
            minute = row["minute"]
            bucket = minute.replace(minute=minute.minute - minute.minute % RATE_BUCKET_MINUTES)
            counts = buckets.setdefault(bucket, [0, 0])
            counts[0] += row["failed"]
            counts[1] += row["total"]
        ordered = sorted(buckets.items())
        result.update(
            unit="%",
            x=[_epoch(at) for at, _c in ordered],
            series=[
                {
                    "label": f"FAILED signals per {RATE_BUCKET_MINUTES} min (%)",
                    "values": [round(100.0 * failed / total, 2) for _at, (failed, total) in ordered],
                }
            ],
            threshold=rule_threshold,
        )
        return result
    runs = list(
        Run.objects.filter(loader_id=incident.loader_id, started_at__gte=start, started_at__lte=end)
        .order_by("started_at")
        .values_list("started_at", "status", "duration_seconds", "finished_at", "rows_written")[:SERIES_LIMIT]
    )
    x = [_epoch(started) for started, *_rest in runs]
    if kind == "volume_out_of_range":
        band = None
        if not {"expected_rows_min", "expected_rows_max"} & hidden:
            low, high = metrics.get("expected_min"), metrics.get("expected_max")
            band = [low, high] if low is not None or high is not None else None
        result.update(
            unit="rows",
            x=x,
            series=[{"label": "Rows written", "values": [row[4] for row in runs]}],
            band=band,
        )
        return result

    def seconds(started: dt.datetime, duration: float | None, finished: dt.datetime | None) -> float:
        if duration is not None:
            return round(duration, 1)
        return round(((finished or now) - started).total_seconds(), 1)

    threshold = None
    if kind == "run_duration":
        from_contract = metrics.get("threshold") is None
        if not (from_contract and "max_duration_minutes" in hidden):
            threshold = metrics.get("limit_seconds", rule_threshold)
    result.update(
        unit="s",
        x=x,
        series=[
            {"label": "Run duration", "values": [seconds(s, d, f) for s, _st, d, f, _r in runs]},
            {
                "label": "Failed runs",
                "values": [seconds(s, d, f) if st in FAILED_RUN_STATUSES else None for s, st, d, f, _r in runs],
            },
        ],
        threshold=threshold,
    )
    return result
