"""Writes of runs and signals — the one path every ingest entry point uses.

ETL jobs authenticate with an ingest token scoped to one loader (or a user with
the right permission uses their own API token); who may write for which loader is the
``Writer``'s rule (signals_app.tokens). Signals are validated item by item with the
field rules of signals_app.validators, without DRF serializers (a batch of 5,000 must stay
fast), all-or-nothing, and written with COPY on PostgreSQL when no item carries an
idempotency key. Runs are validated by the run contract's serializers (the ones the OpenAPI
schema shows), built on the same rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal as DjangoSignal
from django.utils import timezone
from rest_framework import serializers

from etl_monitor.errors import InvalidInput, PermissionRefused, StateConflict
from loaders.models import Loader, LoaderVersion, VersionState
from loaders.validators import LOADER_CODE_RE
from signals_app import metrics, validators
from signals_app.api.serializers import RunFinishSerializer, RunStartSerializer
from signals_app.models import (
    RUN_SIGNAL_IDEMPOTENCY_PREFIX,
    IngestToken,
    MetricSource,
    MetricType,
    Run,
    RunStatus,
    Signal,
    SignalKey,
    ValidationStatus,
)
from signals_app.tokens import Writer

# Sent when a FAILED signal or a failed run was stored (inside the ingest transaction);
# detection subscribes to evaluate the loader's rules right after commit.
failure_ingested = DjangoSignal()

# TextChoices.values builds a new list on every access: the allowed values, once.
STATUSES, TYPES, SOURCES = (tuple(c.values) for c in (ValidationStatus, MetricType, MetricSource))


# --- a request's refusals ----------------------------------------------------------------------


class _Errors:
    """The refusals of one request's signals: by item (``"0"``, ``"1"``…) then field, or by field
    alone for a single signal — all of them, so a sender fixes a batch in one go."""

    def __init__(self) -> None:
        self.by_item: dict[str, dict[str, list[str]]] = {}

    def add(self, index: int | None, field: str, message: str) -> None:
        key = "item" if index is None else str(index)
        self.by_item.setdefault(key, {}).setdefault(field, []).append(message)

    def raise_if_any(self, single: bool) -> None:
        if not self.by_item:
            return
        if single:
            raise InvalidInput(next(iter(self.by_item.values())))
        raise InvalidInput(self.by_item)


# --- signals ---------------------------------------------------------------------------------


class SignalRow(NamedTuple):
    """One signal as the columns of its table, in the order COPY and INSERT write them.

    A tuple, not a model instance: a batch of thousands is validated into these and written
    with COPY as they are. ``attributes`` is the JSON object itself (encoded when written).
    """

    loader_id: int
    signal_key: str
    signal_value: str
    value_number: float | None
    validation_status: str
    metric_type: str
    metric_source: str
    captured_at: dt.datetime
    received_at: dt.datetime
    correlation_id: str
    run_id: int | None
    attributes: dict[str, Any] | None
    idempotency_key: str | None
    loader_paused: bool
    no_active_version: bool


SIGNAL_COLUMNS = SignalRow._fields

SIGNAL_FIELDS = {  # what a signal sent to the API may hold
    "loader_code",
    "signal_key",
    "signal_value",
    "validation_status",
    "metric_type",
    "metric_source",
    "captured_at",
    "correlation_id",
    "run_id",
    "attributes",
    "idempotency_key",
}


def _signal_row(
    item: Any,
    index: int | None,
    loaders: Mapping[str, Loader],
    runs: Mapping[str, Run],
    errors: _Errors,
    now: dt.datetime,
) -> SignalRow | None:
    """One validated signal as a row (a tuple: a batch of thousands must not pay for model
    instances), or None with errors recorded."""
    if not isinstance(item, dict):
        errors.add(index, "non_field_errors", "Each signal must be a JSON object.")
        return None
    if not SIGNAL_FIELDS.issuperset(item):  # the usual case builds no set
        for name in sorted(set(item) - SIGNAL_FIELDS):
            errors.add(index, name, "Unknown field.")
    code = validators.text(item.get("loader_code"), "loader_code", 64, errors, index, required=True)
    loader = loaders.get(code)
    if code and loader is None:
        errors.add(index, "loader_code", f"Unknown loader {code!r}.")
    signal_key = validators.text(item.get("signal_key"), "signal_key", 200, errors, index, required=True)
    raw_value = item.get("signal_value")
    value_number: float | None = None
    if isinstance(raw_value, bool):
        signal_value, value_number = ("true" if raw_value else "false"), float(raw_value)
    elif isinstance(raw_value, (int, float)):  # a tuple: `int | float` would be built anew per item
        if isinstance(raw_value, float) and not math.isfinite(raw_value):
            errors.add(index, "signal_value", "Must be a finite number.")
        signal_value = repr(raw_value) if isinstance(raw_value, float) else str(raw_value)
        try:
            value_number = float(raw_value)
        except OverflowError:
            errors.add(index, "signal_value", "Number too large; send it as a string.")
        if len(signal_value) > 500:
            errors.add(index, "signal_value", "At most 500 characters.")
    elif raw_value is None:
        signal_value = ""
    elif isinstance(raw_value, str):
        signal_value = raw_value
        if "\x00" in signal_value:
            errors.add(index, "signal_value", "Must not contain NUL characters.")
        if len(signal_value) > 500:
            errors.add(index, "signal_value", "At most 500 characters.")
        try:
            parsed = float(signal_value)
            value_number = parsed if math.isfinite(parsed) else None
        except ValueError:
            value_number = None
    else:
        errors.add(index, "signal_value", "Must be a number, a string, a boolean or null.")
        signal_value = ""
    validation_status = validators.choice(
        item.get("validation_status"), "validation_status", STATUSES, None, errors, index
    )
    metric_type = validators.choice(item.get("metric_type"), "metric_type", TYPES, MetricType.CUSTOM, errors, index)
    metric_source = validators.choice(
        item.get("metric_source"), "metric_source", SOURCES, MetricSource.ETL, errors, index
    )
    captured_at = validators.timestamp(item.get("captured_at"), "captured_at", errors, index, now) or now
    correlation_id = validators.text(item.get("correlation_id"), "correlation_id", 100, errors, index)
    idempotency_key = validators.text(item.get("idempotency_key"), "idempotency_key", 200, errors, index) or None
    attributes = item.get("attributes")
    if attributes is not None:
        encoded = json.dumps(attributes) if isinstance(attributes, dict) else ""
        if not isinstance(attributes, dict) or len(attributes) > 50 or len(encoded) > 4000:
            errors.add(index, "attributes", "Must be a JSON object of at most 50 keys and about 4 KB.")
            attributes = None
        elif "\\u0000" in encoded:  # PostgreSQL's jsonb cannot hold NUL
            errors.add(index, "attributes", "Must not contain NUL characters.")
            attributes = None
    run = None
    run_id = item.get("run_id")
    if run_id is not None:
        run = runs.get(_uuid_key(run_id))
        if run is None:
            errors.add(index, "run_id", f"Unknown run {run_id!r}.")
        elif loader is not None and run.loader_id != loader.pk:
            errors.add(index, "run_id", "This run belongs to another loader.")
    if loader is None:
        return None
    return SignalRow(  # by position, in the fields' order: keywords cost a batch of 1,000 about 1 ms
        loader.pk,
        signal_key,
        signal_value,
        value_number,
        validation_status,
        metric_type,
        metric_source,
        captured_at,
        now,  # received_at
        correlation_id,
        run.pk if run is not None else None,  # run_id
        attributes,
        idempotency_key,
        loader.is_paused,  # loader_paused
        not getattr(loader, "has_active", True),  # no_active_version
    )


def _loaders_by_code(codes: Iterable[str]) -> dict[str, Loader]:
    from django.db.models import Exists, OuterRef

    active = LoaderVersion.objects.filter(loader=OuterRef("pk"), state=VersionState.ACTIVE)
    valid = {code for code in codes if LOADER_CODE_RE.match(code)}  # anything else cannot exist
    queryset = Loader.objects.filter(loader_code__in=valid).annotate(has_active=Exists(active))
    return {loader.loader_code: loader for loader in queryset}


def signals_ingest(*, writer: Writer, payload: Any) -> dict[str, Any]:
    """Validate and store one signal (a JSON object) or a batch (a JSON list), all or nothing.

    Returns ``{"accepted": n}``: how many of the request's signals are stored —
    the same answer when a batch whose items carry idempotency keys is retried.
    """
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list):
        raise InvalidInput({"non_field_errors": ["Send one signal (an object) or a list of signals."]})
    if not items:
        raise InvalidInput({"non_field_errors": ["The list is empty."]})
    if len(items) > settings.SIGNAL_BATCH_MAX:
        raise InvalidInput(
            {"non_field_errors": [f"At most {settings.SIGNAL_BATCH_MAX} signals per request; got {len(items)}."]}
        )
    now = timezone.now()
    codes = [i.get("loader_code") for i in items if isinstance(i, dict) and isinstance(i.get("loader_code"), str)]
    token_loader = writer.token.loader if writer.token is not None else None
    if token_loader is not None and hasattr(token_loader, "has_active") and set(codes) <= {token_loader.loader_code}:
        loaders = {token_loader.loader_code: token_loader}  # the usual case: a job writing for its own loader
    else:
        loaders = _loaders_by_code(codes)
    run_ids = [str(i["run_id"]) for i in items if isinstance(i, dict) and i.get("run_id") is not None]
    runs = {str(r.run_id): r for r in Run.objects.filter(run_id__in=_uuids(run_ids))} if run_ids else {}
    errors = _Errors()
    rows: list[SignalRow] = []
    for index, item in enumerate(items):
        row = _signal_row(item, None if single else index, loaders, runs, errors, now)
        if row is not None:
            rows.append(row)
    errors.raise_if_any(single)
    by_id = {loader.pk: loader for loader in loaders.values()}
    for loader_id in {row.loader_id for row in rows}:
        writer.check(by_id[loader_id])
    keys_in_batch = [row.idempotency_key for row in rows if row.idempotency_key]
    if len(keys_in_batch) != len(set(keys_in_batch)):
        raise InvalidInput({"idempotency_key": ["The same idempotency_key appears twice in this request."]})
    stored = _signals_write(rows)
    metrics.signals_received((by_id[rows[i].loader_id].loader_code, rows[i].validation_status) for i in stored)
    for loader_id in {rows[i].loader_id for i in stored if rows[i].validation_status == ValidationStatus.FAILED}:
        failure_ingested.send(sender=Signal, loader_id=loader_id)
    return {"accepted": len(rows)}


def signals_capture(
    *,
    loader: Loader,
    values: list[tuple[str, float]],
    metric_type: str,
    metric_source: str,
    captured_at: dt.datetime,
    idempotency_prefix: str,
    attributes: dict[str, Any] | None = None,
) -> int:
    """Store measured values (statistics capture) as SUCCESS signals of ``loader``, one per
    ``(key, value)``; return how many were new. Each is keyed ``idempotency_prefix`` + its key, so
    capturing the same bucket again — a worker retry, two schedulers — stores nothing twice."""
    if not values:
        return 0
    now = timezone.now()
    no_active = not LoaderVersion.objects.filter(loader=loader, state=VersionState.ACTIVE).exists()
    rows = []
    for key, value in values:
        idem = f"{idempotency_prefix}{key}"
        if len(idem) > 200:  # the key column's size: a long key is kept unique by its hash
            idem = f"{idempotency_prefix}#{hashlib.sha256(key.encode()).hexdigest()}"
        rows.append(
            SignalRow(
                loader_id=loader.pk,
                signal_key=key[:200],
                signal_value=format(value, ".10g"),
                value_number=value,
                validation_status=ValidationStatus.SUCCESS,
                metric_type=metric_type,
                metric_source=metric_source,
                captured_at=captured_at,
                received_at=now,
                correlation_id="",
                run_id=None,
                attributes=attributes,
                idempotency_key=idem,
                loader_paused=loader.is_paused,
                no_active_version=no_active,
            )
        )
    stored = _signals_write(rows)
    metrics.signals_received((loader.loader_code, ValidationStatus.SUCCESS) for _ in stored)
    return len(stored)


def _uuid_key(value: Any) -> str:
    """The canonical text of a UUID (any case, with or without dashes), or the value as given."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _uuids(values: Iterable[str]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            continue
    return out


def _signals_write(rows: list[SignalRow]) -> list[int]:
    """Insert ``rows``; return the indexes of the rows that were new.

    Keyed rows first claim their (loader, key) in SignalKey; only rows whose claim
    succeeded are stored, so a retry — even one racing the original — stores nothing twice.
    """
    if not rows:
        return []
    keys = [(r.loader_id, r.idempotency_key) for r in rows if r.idempotency_key]
    if not keys and len(rows) <= SMALL_BATCH:
        # One INSERT statement is atomic on its own: no BEGIN/COMMIT round trips.
        _signals_store(rows)
        return list(range(len(rows)))
    with transaction.atomic():
        new_indexes = list(range(len(rows)))
        if keys:
            claimed = _keys_claim(keys, rows[0].received_at)
            new_indexes = [
                i for i, r in enumerate(rows) if not r.idempotency_key or (r.loader_id, r.idempotency_key) in claimed
            ]
        _signals_store([rows[i] for i in new_indexes])
    return new_indexes


SMALL_BATCH = 20


def _signals_store(rows: list[SignalRow]) -> None:
    """A handful of rows with one INSERT (COPY's extra protocol steps cost more than they save:
    a job's single keyed signal, a run's standard signals), more with COPY on PostgreSQL."""
    if not rows:
        return
    if len(rows) <= SMALL_BATCH:
        _signals_insert(rows)
    elif connection.vendor == "postgresql":
        _signals_copy(rows)
    else:
        Signal.objects.bulk_create([Signal(**r._asdict()) for r in rows], batch_size=1000)


def _signals_insert(rows: list[SignalRow]) -> None:
    columns = ", ".join(SIGNAL_COLUMNS)
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(SIGNAL_COLUMNS)) + ")"] * len(rows))
    values = [value for row in rows for value in _attributes_encoded(row)]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {Signal._meta.db_table} ({columns}) VALUES {placeholders}", values)  # noqa: S608


def _keys_claim(pairs: list[tuple[int, str]], now: dt.datetime) -> set[tuple[int, str]]:
    """Insert the idempotency keys; return the ones that were not there before."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SignalKey._meta.db_table} (loader_id, key, created_at) "  # noqa: S608 - model's table
                "SELECT l, k, %s FROM unnest(%s::bigint[], %s::text[]) AS t(l, k) "
                "ON CONFLICT DO NOTHING RETURNING loader_id, key",
                [now, [p[0] for p in pairs], [p[1] for p in pairs]],
            )
            return {(row[0], row[1]) for row in cursor.fetchall()}
    loader_ids = {p[0] for p in pairs}
    existing = set(
        SignalKey.objects.filter(loader_id__in=loader_ids, key__in=[p[1] for p in pairs]).values_list(
            "loader_id", "key"
        )
    )
    fresh = [p for p in pairs if p not in existing]
    SignalKey.objects.bulk_create([SignalKey(loader_id=p[0], key=p[1], created_at=now) for p in fresh])
    return set(fresh)


def _signals_copy(rows: list[SignalRow]) -> None:
    """COPY the rows in (PostgreSQL): several times faster than INSERT for large batches."""
    if not rows:
        return
    with connection.cursor() as cursor:
        sql = f"COPY {Signal._meta.db_table} ({', '.join(SIGNAL_COLUMNS)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row if row.attributes is None else _attributes_encoded(row))


def _attributes_encoded(row: SignalRow) -> SignalRow:
    """The row as the database driver takes it: ``attributes`` as JSON text."""
    return row if row.attributes is None else row._replace(attributes=json.dumps(row.attributes))


# --- runs ----------------------------------------------------------------------------------


def _contract_valid(contract: type[serializers.Serializer], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` checked by the run contract's serializer — the one the OpenAPI schema shows — or
    InvalidInput naming every field at fault."""
    serializer = contract(data=data)
    if not serializer.is_valid():
        raise InvalidInput(
            {field: [str(message) for message in messages] for field, messages in serializer.errors.items()}
        )
    return serializer.validated_data


@transaction.atomic
def run_start(*, writer: Writer, data: Mapping[str, Any]) -> tuple[Run, bool]:
    """Start a run (``data``: loader_code, optional run_id, started_at, correlation_id; see
    ``RunStartSerializer``).

    Starting a run_id that already exists returns it unchanged (a retried start),
    so the second value says whether it was created now.
    """
    valid = _contract_valid(RunStartSerializer, data)
    loader: Loader = valid["loader"]
    writer.check(loader)
    if valid["run_id"] is not None:
        existing = Run.objects.filter(run_id=valid["run_id"]).first()
        if existing is not None:
            if existing.loader_id != loader.pk:
                raise StateConflict("This run_id belongs to another loader.")
            return existing, False
    active = loader.versions.filter(state=VersionState.ACTIVE).first()
    run = Run.objects.create(
        run_id=valid["run_id"] or uuid.uuid4(),
        loader=loader,
        loader_version=active,
        started_at=valid["started_at"] or timezone.now(),
        correlation_id=valid["correlation_id"],
        loader_paused=loader.is_paused,
        no_active_version=active is None,
    )
    return run, True


@transaction.atomic
def run_finish(*, writer: Writer, run: Run, data: Mapping[str, Any]) -> Run:
    """Finish a RUNNING run and record its standard signals (duration, row counts, status);
    ``data`` as ``RunFinishSerializer`` describes it.

    Finishing an already finished run with the same status is accepted and
    changes nothing (a retried request); another status is a conflict.
    """
    valid = _contract_valid(RunFinishSerializer, data)
    run = Run.objects.select_for_update().select_related("loader").get(pk=run.pk)
    writer.check(run.loader)
    if run.status != RunStatus.RUNNING:
        if run.status == valid["status"]:
            return run
        raise StateConflict(f"This run already finished as {run.status}.")
    finished = valid["finished_at"] or timezone.now()
    if finished < run.started_at:
        raise InvalidInput({"finished_at": ["Is before the run started."]})
    run.status = valid["status"]
    run.finished_at = finished
    run.duration_seconds = (finished - run.started_at).total_seconds()
    for name in ("rows_read", "rows_written", "rows_rejected", "exit_status", "error_text", "log_excerpt"):
        setattr(run, name, valid[name])
    if valid["correlation_id"]:
        run.correlation_id = valid["correlation_id"]
    run.save()
    _run_signals(run)
    if run.status != RunStatus.SUCCEEDED:
        failure_ingested.send(sender=Run, loader_id=run.loader_id)
    return run


def _run_signals(run: Run) -> None:
    """The standard signals of a finished run, so rules see runs and signals alike."""
    status = ValidationStatus.SUCCESS if run.status == RunStatus.SUCCEEDED else ValidationStatus.FAILED
    received = timezone.now()

    def row(key: str, text: str, number: float | None, metric_type: str) -> SignalRow:
        return SignalRow(
            loader_id=run.loader_id,
            signal_key=key,
            signal_value=text,
            value_number=number,
            validation_status=status,
            metric_type=metric_type,
            metric_source=MetricSource.ETL,
            captured_at=run.finished_at,
            received_at=received,
            correlation_id=run.correlation_id,
            run_id=run.pk,
            attributes=None,
            idempotency_key=f"{RUN_SIGNAL_IDEMPOTENCY_PREFIX}{run.run_id}:{key}",
            loader_paused=run.loader_paused,
            no_active_version=run.no_active_version,
        )

    # The keys are RUN_SIGNAL_KEYS: what the failure-rate rule leaves to the run's own rule.
    rows = [
        row("run_status", run.status, None, MetricType.RUN_STATUS),
        row("run_duration_seconds", f"{run.duration_seconds:.3f}", run.duration_seconds, MetricType.DURATION_SECONDS),
    ]
    for name in ("rows_read", "rows_written", "rows_rejected"):
        value = getattr(run, name)
        if value is not None:
            rows.append(row(name, str(value), float(value), MetricType.ROW_COUNT))
    stored = _signals_write(rows)
    metrics.signals_received((run.loader.loader_code, rows[i].validation_status) for i in stored)
    metrics.run_finished(run)


# --- pings --------------------------------------------------------------------------------


@transaction.atomic
def _ping_run_create(loader: Loader, now: dt.datetime, excerpt: str, run_id: uuid.UUID | None) -> Run:
    active = loader.versions.filter(state=VersionState.ACTIVE).first()
    return Run.objects.create(
        loader=loader,
        loader_version=active,
        started_at=now,
        source="PING",
        log_excerpt=excerpt,
        loader_paused=loader.is_paused,
        no_active_version=active is None,
        **({"run_id": run_id} if run_id is not None else {}),
    )


def _ping_start(loader: Loader, now: dt.datetime, excerpt: str, run_id: uuid.UUID | None) -> Run:
    """Open a ping run, unless this start is a retry of one already recorded."""
    if run_id is not None:
        existing = Run.objects.filter(run_id=run_id).first()
        if existing is not None:
            if existing.loader_id != loader.pk:
                raise InvalidInput({"rid": ["This run id belongs to another loader's run."]})
            return existing
        try:
            with transaction.atomic():
                return _ping_run_create(loader, now, excerpt, run_id)
        except IntegrityError:  # the same start, retried at the same moment
            return Run.objects.get(run_id=run_id)
    retried = (
        Run.objects.filter(
            loader=loader,
            source="PING",
            status=RunStatus.RUNNING,
            log_excerpt=excerpt,
            started_at__gte=now - dt.timedelta(seconds=settings.PING_START_RETRY_SECONDS),
        )
        .order_by("-started_at")
        .first()
    )
    return retried or _ping_run_create(loader, now, excerpt, None)


def ping_record(*, token: IngestToken, loader_code: str, action: str, body: str = "", rid: str = "") -> Run:
    """A cron-style ping: ``start`` opens a run; ``success``/``fail``/an exit status closes
    the loader's latest open ping run (or records a run that starts and ends now).

    ``rid`` (a UUID the job chooses, as Healthchecks' ``?rid=``) is the run's id: a retried start
    with it returns the same run, and the finish closes exactly that run, so overlapping runs of
    one loader stay apart. Without it, a start repeated with the same body within
    ``PING_START_RETRY_SECONDS`` (``curl --retry`` after a lost answer) is the same run too.

    The pings of one loader take turns (a lock on the loader row, held by one transaction per
    ping): which run a ping opens or closes depends on what the ping before it did, so pings
    arriving at the same moment are recorded as if they had come one after the other.
    """
    loader = token.loader
    if loader.loader_code != loader_code:
        raise PermissionRefused(f"This ping key may not ping loader {loader_code}.")
    if token.kind != IngestToken.Kind.PING:
        raise PermissionRefused("Only ping keys can use the ping URLs.")
    run_id = None
    if rid:
        try:
            run_id = uuid.UUID(rid)
        except ValueError:
            raise InvalidInput({"rid": [f"Must be a UUID, e.g. {uuid.uuid4()}; got {rid[:60]!r}."]}) from None
    if action == "start":
        exit_status: int | None = None
    elif action == "success":
        exit_status = 0
    elif action == "fail":
        exit_status = None
    elif action.isdigit() and 0 <= int(action) <= 255:
        exit_status = int(action)
    else:
        raise InvalidInput({"action": ["Use start, fail, or an exit status from 0 to 255."]})
    with transaction.atomic():
        _ping_turn(loader)
        now = timezone.now()
        if action == "start":
            return _ping_start(loader, now, validators.free_text(body, validators.LOG_EXCERPT_MAX), run_id)
        failed = action == "fail" or (exit_status or 0) != 0
        return _ping_finish(token, loader, now, failed=failed, exit_status=exit_status, body=body, run_id=run_id)


def _ping_turn(loader: Loader) -> None:
    """Wait for the loader's other pings to commit. FOR NO KEY UPDATE: runs and signals of the
    loader (which only take a key-share lock on it) are still written meanwhile."""
    list(Loader.objects.select_for_update(no_key=True).filter(pk=loader.pk).values_list("pk", flat=True))


def _ping_finish(
    token: IngestToken,
    loader: Loader,
    now: dt.datetime,
    *,
    failed: bool,
    exit_status: int | None,
    body: str,
    run_id: uuid.UUID | None,
) -> Run:
    open_runs = Run.objects.select_for_update().filter(loader=loader, source="PING")
    if run_id is not None:
        run = open_runs.filter(run_id=run_id).first()
        if run is not None and run.status != RunStatus.RUNNING:
            return run  # a retried finish of a run already closed: the same answer, nothing changes
    else:
        run = open_runs.filter(status=RunStatus.RUNNING).order_by("-started_at").first()
    if run is None:
        run = _ping_run_create(loader, now, "", run_id)
    data: dict[str, Any] = {"status": RunStatus.FAILED if failed else RunStatus.SUCCEEDED, "log_excerpt": body}
    if exit_status is not None:
        data["exit_status"] = exit_status
    if failed and body:
        data["error_text"] = body
    ping_writer = Writer(token=IngestToken(loader_id=loader.pk, kind=IngestToken.Kind.API, prefix=token.prefix))
    return run_finish(writer=ping_writer, run=run, data=data)
