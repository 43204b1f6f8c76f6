"""The series an anomaly rule watches, read from what the platform stores.

A *source* turns runs or signals into points ``(subject, loader_id, at, value)`` in time order:

- ``signal``: the numeric value of signals with a key (or of a metric type, e.g. the STATS-*
  captures), at ``captured_at``; per loader, or per loader and key (``LOADER/key``);
- ``run_duration``, ``rows_written``, ``rows_read``, ``rows_rejected``: each run that SUCCEEDED,
  at ``finished_at`` (a failed run's duration and counts are partial: the ``run_failed`` rule's);
- ``start_lateness``: seconds between a run's start and the slot of the loader's schedule it
  belongs to (the ACTIVE version's cron, in its time zone), at ``started_at``;
- ``time_between_runs``: seconds since the loader's previous run started, at ``started_at``.

Points are read by the time they carry, in ``(since, until]``: a point that arrives after a later
one of the same subject was already scored is not scored (the detector never looks back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Max, QuerySet

from loaders.models import Loader, LoaderVersion, VersionState
from loaders.schedule import previous_slot
from signals_app.models import Run, RunStatus, Signal

SOURCES: dict[str, str] = {
    "signal": "A signal key's (or metric type's) numeric values",
    "run_duration": "Run duration (seconds) of runs that succeeded",
    "rows_written": "Rows written by runs that succeeded",
    "rows_read": "Rows read by runs that succeeded",
    "rows_rejected": "Rows rejected by runs that succeeded",
    "start_lateness": "Seconds between a run's start and its scheduled slot",
    "time_between_runs": "Seconds since the loader's previous run started",
}
RUN_COLUMNS = {"rows_written": "rows_written", "rows_read": "rows_read", "rows_rejected": "rows_rejected"}
# A run that starts up to this long before its slot belongs to that slot (lateness is negative).
EARLY_START = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    subject: str
    loader_id: int
    at: dt.datetime
    value: float


def source_label(params: dict[str, Any]) -> str:
    """What a rule's series is, in words: "rows written", "signal rows_loaded"."""
    source = params.get("source", "signal")
    if source == "signal":
        return f"signal {params.get('signal_key') or params.get('metric_type')}"
    return source.replace("_", " ")


def series_points(
    params: dict[str, Any], loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime
) -> Iterator[SeriesPoint]:
    """The points of every subject of the rule's scope in ``(since, until]``, in time order."""
    source = params.get("source", "signal")
    if source == "signal":
        yield from _signal_points(params, loaders, since, until)
    elif source in ("run_duration", *RUN_COLUMNS):
        yield from _run_points(source, loaders, since, until)
    elif source == "start_lateness":
        yield from _lateness_points(loaders, since, until)
    elif source == "time_between_runs":
        yield from _gap_points(loaders, since, until)
    else:
        raise ValueError(f"unknown source {source!r}")


def _signal_points(
    params: dict[str, Any], loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime
) -> Iterator[SeriesPoint]:
    signals = Signal.objects.filter(
        loader__in=loaders, captured_at__gt=since, captured_at__lte=until, value_number__isnull=False
    )
    if key := params.get("signal_key"):
        signals = signals.filter(signal_key=key)
    if metric_type := params.get("metric_type"):
        signals = signals.filter(metric_type=metric_type)
    per_key = params.get("per") == "signal_key"
    rows = signals.order_by("captured_at", "pk").values_list(
        "loader_id", "loader__loader_code", "signal_key", "captured_at", "value_number"
    )
    for loader_id, code, key, at, value in rows.iterator(chunk_size=5000):
        yield SeriesPoint(f"{code}/{key}" if per_key else code, loader_id, at, value)


def _run_points(
    source: str, loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime
) -> Iterator[SeriesPoint]:
    runs = Run.objects.filter(
        loader__in=loaders, status=RunStatus.SUCCEEDED, finished_at__gt=since, finished_at__lte=until
    )
    if source == "run_duration":
        rows = runs.order_by("finished_at", "pk").values_list(
            "loader_id", "loader__loader_code", "finished_at", "started_at", "duration_seconds"
        )
        for loader_id, code, finished, started, value in rows.iterator(chunk_size=5000):
            seconds = value if value is not None else (finished - started).total_seconds()
            yield SeriesPoint(code, loader_id, finished, float(seconds))
        return
    rows = runs.exclude(**{f"{RUN_COLUMNS[source]}__isnull": True}).order_by("finished_at", "pk")
    for loader_id, code, finished, value in rows.values_list(
        "loader_id", "loader__loader_code", "finished_at", RUN_COLUMNS[source]
    ).iterator(chunk_size=5000):
        yield SeriesPoint(code, loader_id, finished, float(value))


def _started_runs(
    loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime
) -> Iterator[tuple[int, str, dt.datetime]]:
    runs = Run.objects.filter(loader__in=loaders, started_at__gt=since, started_at__lte=until)
    rows = runs.order_by("started_at", "pk").values_list("loader_id", "loader__loader_code", "started_at")
    yield from rows.iterator(chunk_size=5000)


def _lateness_points(
    loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime
) -> Iterator[SeriesPoint]:
    # The schedule in force when each run started: the latest approval before it.
    approvals = contract_history(loaders, until)
    for loader_id, code, started in _started_runs(loaders, since, until):
        version = version_at(approvals.get(loader_id, []), started)
        if version is None or not version.schedule_cron:
            continue
        slot = previous_slot(version.schedule_cron, version.schedule_timezone, started + EARLY_START)
        if slot is not None:
            yield SeriesPoint(code, loader_id, started, (started - slot.at).total_seconds())


def _gap_points(loaders: QuerySet[Loader] | list[int], since: dt.datetime, until: dt.datetime) -> Iterator[SeriesPoint]:
    previous = dict(
        Run.objects.filter(loader__in=loaders, started_at__lte=since)
        .values("loader_id")
        .annotate(last=Max("started_at"))
        .values_list("loader_id", "last")
    )
    for loader_id, code, started in _started_runs(loaders, since, until):
        before = previous.get(loader_id)
        previous[loader_id] = started
        if before is not None and started > before:
            yield SeriesPoint(code, loader_id, started, (started - before).total_seconds())


# --- approvals: the known change points -----------------------------------------------------------

# The contract fields whose change makes an approval a known change point of a loader's series.
CHANGE_FIELDS = (
    "schedule_cron",
    "schedule_timezone",
    "max_duration_minutes",
    "expected_rows_min",
    "expected_rows_max",
)


@dataclass(frozen=True, slots=True)
class Approval:
    """An approved loader version: when, by whom, and whether it changed what the series follow."""

    version_id: int
    loader_id: int
    number: int
    at: dt.datetime
    by: str
    changed: tuple[str, ...]
    schedule_cron: str
    schedule_timezone: str


def contract_history(loaders: QuerySet[Loader] | list[int], until: dt.datetime) -> dict[int, list[Approval]]:
    """Every approval of the loaders up to ``until``, oldest first, each with the contract fields
    it changed against the version before it (a first version changes nothing: there was no
    baseline to restart)."""
    versions = (
        LoaderVersion.objects.filter(
            loader__in=loaders,
            state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED],
            decided_at__isnull=False,
            decided_at__lte=until,
        )
        .annotate(approver=F("decided_by__username"))
        .order_by("loader_id", "decided_at", "number")
        .values("pk", "loader_id", "number", "decided_at", "approver", *CHANGE_FIELDS)
    )
    history: dict[int, list[Approval]] = {}
    previous: dict[int, dict[str, Any]] = {}
    for v in versions:
        before = previous.get(v["loader_id"])
        changed = tuple(f for f in CHANGE_FIELDS if before is not None and before[f] != v[f])
        previous[v["loader_id"]] = v
        history.setdefault(v["loader_id"], []).append(
            Approval(
                version_id=v["pk"],
                loader_id=v["loader_id"],
                number=v["number"],
                at=v["decided_at"],
                by=v["approver"] or "someone",
                changed=changed,
                schedule_cron=v["schedule_cron"],
                schedule_timezone=v["schedule_timezone"],
            )
        )
    return history


def version_at(approvals: list[Approval], at: dt.datetime) -> Approval | None:
    """The version in force at ``at``: the latest approved at or before it."""
    found = None
    for approval in approvals:
        if approval.at > at:
            break
        found = approval
    return found
