"""The demo's runs and their standard signals, bulk-inserted into the columns the ingest writes,
following each loader's schedule in its time zone."""

from __future__ import annotations

import datetime as dt
import random
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from croniter import croniter
from django.db import connection, models
from django.utils import timezone

from etl_monitor.demo.catalogue import BATCH, ERRORS, FAILING, FLAKY, HEALTHY, LATE, LOW_VOLUME, SLOW, DemoReport
from loaders.models import Loader, LoaderVersion
from loaders.schedule import slot_utc
from signals_app.models import (
    RUN_SIGNAL_IDEMPOTENCY_PREFIX,
    MetricSource,
    MetricType,
    Run,
    RunStatus,
    Signal,
    SignalKey,
    ValidationStatus,
)
from signals_app.services import SIGNAL_COLUMNS, SignalRow


def schedule_slots(cron: str, zone_name: str, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """The schedule's slots in (start, end], in UTC, read in the loader's time zone."""
    zone = zoneinfo.ZoneInfo(zone_name or "UTC")
    walk = croniter(cron, start.astimezone(zone))
    while True:
        slot = slot_utc(walk.get_next(dt.datetime), zone)
        if slot > end:
            return
        yield slot


@dataclass
class RunPlan:
    run: Run
    failed_streak: bool = False  # one of the failures the loader's open incident is about


def runs_plan(
    loader: Loader, version: LoaderVersion, profile: str, start: dt.datetime, now: dt.datetime, seed: int
) -> list[RunPlan]:
    """One run per slot of the schedule, shaped by the loader's profile: a failing loader's last
    runs failed, a late one's last two slots have no run, a slow one's runs grow past their limit,
    a low-volume one's last runs write a fraction of the expected rows, a flaky one fails often.

    Each slot draws from its own random generator (seed, loader, slot), so a healthy loader's run
    of a slot is the same whenever the demo is loaded: a later ``now`` only adds runs at the end."""
    slots = list(schedule_slots(version.schedule_cron, version.schedule_timezone, start, now))
    grace = dt.timedelta(minutes=version.grace_minutes or 0)
    due = [s for s in slots if s <= now - grace]
    if profile == LATE and len(due) >= 2:
        slots = [s for s in slots if s < due[-2]]  # the last two slots that were due never ran
    limit = (version.max_duration_minutes or 30) * 60
    typical = limit / 2.2
    rows_min, rows_max = version.expected_rows_min or 1000, version.expected_rows_max or 10000
    rows_typical = (rows_min + rows_max) / 2.5
    plans = []
    for index, slot in enumerate(slots):
        from_end = len(slots) - index  # 1 for the latest run
        rng = random.Random(f"{seed}:{loader.loader_code}:{slot:%Y%m%dT%H%M}")
        started = slot + dt.timedelta(seconds=rng.uniform(2, 90))
        if started > now:
            continue  # the job starts a little after its slot: not yet
        duration = typical * rng.uniform(0.75, 1.25)
        rows = int(rows_typical * rng.uniform(0.8, 1.2) * (1.15 if slot.weekday() < 5 else 0.7))
        fail_rate = {HEALTHY: 0.01, FLAKY: 0.12}.get(profile, 0.03)
        failed = rng.random() < fail_rate
        streak = False
        if profile == FAILING and from_end <= 3:
            failed = streak = True
        if profile == SLOW:
            progress = index / max(1, len(slots) - 1)
            duration = typical * (0.9 + 0.9 * progress**3) * rng.uniform(0.9, 1.1)
            if from_end <= 3:
                duration = limit * rng.uniform(1.3, 1.7)
        if profile == LOW_VOLUME and from_end <= 3:
            rows = int(rows_min * rng.uniform(0.05, 0.2))
        if failed:
            duration *= rng.uniform(0.1, 0.6)
            rows = 0
        finished = started + dt.timedelta(seconds=duration)
        running = finished > now
        if running and profile != HEALTHY:
            continue  # a troubled loader's story ends with its last finished run
        run = Run(
            run_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            loader=loader,
            loader_version=version,
            started_at=started,
            correlation_id=f"{loader.loader_code.lower()}-{started:%Y%m%dT%H%M}",
            source="API",
        )
        if not running:
            run.status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
            run.finished_at = finished
            run.duration_seconds = round(duration, 3)
            run.rows_read = 0 if failed else int(rows * rng.uniform(1.0, 1.05))
            run.rows_written = rows
            run.rows_rejected = 0 if failed else int(rows * rng.uniform(0, 0.002))
            run.exit_status = 1 if failed else 0
            if failed:
                run.error_text = rng.choice(ERRORS).format(
                    host=version.connection_host or f"{version.source_system or 'source'}.internal",
                    table=(version.target or "target").split(".")[-1],
                )
        plans.append(RunPlan(run, failed_streak=streak))
    return plans


# Every column of a run but its id, so a field added to Run is written here too.
RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.primary_key]
RUN_COLUMNS = tuple(f.column for f in RUN_FIELDS)


def _run_signal_rows(run: Run, run_pk: int, received: dt.datetime) -> list[SignalRow]:
    """The standard signals of a finished run, as ``signals_app.services._run_signals`` writes them."""
    status = ValidationStatus.SUCCESS if run.status == RunStatus.SUCCEEDED else ValidationStatus.FAILED
    prefix = f"{RUN_SIGNAL_IDEMPOTENCY_PREFIX}{run.run_id}:"

    def row(key: str, text: str, number: float | None, metric_type: str) -> SignalRow:
        return SignalRow(
            run.loader_id,
            key,
            text,
            number,
            status,
            metric_type,
            MetricSource.ETL,
            run.finished_at,
            received,
            run.correlation_id,
            run_pk,
            None,  # attributes
            prefix + key,
            False,  # loader_paused
            False,  # no_active_version
        )

    return [
        row("run_status", run.status, None, MetricType.RUN_STATUS),
        row("run_duration_seconds", f"{run.duration_seconds:.3f}", run.duration_seconds, MetricType.DURATION_SECONDS),
        row("rows_read", str(run.rows_read), float(run.rows_read), MetricType.ROW_COUNT),
        row("rows_written", str(run.rows_written), float(run.rows_written), MetricType.ROW_COUNT),
        row("rows_rejected", str(run.rows_rejected), float(run.rows_rejected), MetricType.ROW_COUNT),
    ]


def _rows_insert(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert plain rows into ``model``'s table: COPY on PostgreSQL (as the ingest writes large
    batches), one prepared INSERT run for all rows elsewhere. Tens of thousands of model instances
    through ``bulk_create`` would take most of a minute."""
    if not rows:
        return
    table, names = model._meta.db_table, ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 - the models' own tables
            _sqlite_values(model, columns, rows),
        )


def _sqlite_values(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[list]:
    """The rows as the ORM stores them in SQLite: times as naive UTC text (so lookups compare
    alike), UUIDs as hex. A run's signals share their two times: each is converted once."""
    fields = {f.column: f for f in model._meta.concrete_fields}
    times = [i for i, c in enumerate(columns) if isinstance(fields[c], models.DateTimeField)]
    uuids = [i for i, c in enumerate(columns) if isinstance(fields[c], models.UUIDField)]
    texts: dict[dt.datetime, str] = {}
    values = []
    for row in rows:
        value = list(row)
        for i in times:
            moment = value[i]
            if moment is not None:
                text = texts.get(moment)
                if text is None:
                    text = texts[moment] = str(moment.astimezone(dt.UTC).replace(tzinfo=None))
                value[i] = text
        for i in uuids:
            value[i] = value[i].hex
        values.append(value)
    return values


def runs_write(plans: list[RunPlan], report: DemoReport) -> None:
    """The planned runs, then the standard signals of the finished ones and their idempotency keys
    (SignalKey, as the ingest claims them)."""
    if not plans:
        return
    written = timezone.now()
    runs = [p.run for p in plans]
    _rows_insert(
        Run,
        RUN_COLUMNS,
        [
            tuple(written if f.name in ("created_at", "updated_at") else getattr(run, f.attname) for f in RUN_FIELDS)
            for run in runs
        ],
    )
    pks = dict(
        Run.objects.filter(loader_id__in={run.loader_id for run in runs}).values_list("run_id", "pk").iterator(BATCH)
    )
    report.runs += len(runs)
    signals: list[SignalRow] = []
    for run in runs:
        if run.status != RunStatus.RUNNING:
            signals.extend(_run_signal_rows(run, pks[run.run_id], run.finished_at + dt.timedelta(seconds=1)))
    _rows_insert(Signal, SIGNAL_COLUMNS, signals)
    _rows_insert(
        SignalKey,
        ("loader_id", "key", "created_at"),
        [(s.loader_id, s.idempotency_key, s.received_at) for s in signals],
    )
    report.signals += len(signals)


# --- incidents ---------------------------------------------------------------------------------
