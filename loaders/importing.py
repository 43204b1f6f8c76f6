"""Bulk import and export of loaders (xlsx / csv).

One spreadsheet row is one loader, with the same flat fields as the API. The
import only reads cells as their fields' types and reports rows: every rule is the
services', so a row is refused exactly as the API or the admin would refuse it,
and the report names each bad row and column. It writes all or nothing:

- new loaders go through ``services.loaders_create_many`` (a DRAFT v1, or
  PENDING_APPROVAL with ``submit``): checked together and written with bulk
  inserts and their history rows;
- existing loaders go through ``services.loader_edit`` (a DRAFT from the ACTIVE
  version), exactly like an edit in the admin; the preview asks
  ``services.loader_edit_check``.

Nothing ever becomes ACTIVE here: approval stays a second person's decision.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from etl_monitor.crypto import secret_decrypt_bytes, secret_encrypt_bytes
from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError, StateConflict
from etl_monitor.outage import cache_call, task_publish
from etl_monitor.permissions import permission_require
from etl_monitor.protection import MASK, FieldPolicy, policy_for
from loaders import selectors, services
from loaders.models import ImportJob, Loader, LoaderVersion, Team, VersionState
from loaders.spreadsheets import Sheet, SheetRow, spreadsheet_read, spreadsheet_write
from loaders.validators import EXAMPLE_LOADER_CODE

logger = logging.getLogger(__name__)

# Column → help text, in spreadsheet order. The column names are the API's field names.
COLUMNS: dict[str, str] = {
    "loader_code": "Required. Upper-case identifier, e.g. SALES-DAILY (letters, digits, '-' and '_').",
    "name": "Required. Human-readable name.",
    "owner": "Required. Slug of an existing team, e.g. data-platform.",
    "tags": "Optional. Tag names separated by commas, e.g. 'sales, daily'.",
    "is_paused": "Optional. TRUE to keep the loader registered but not monitored.",
    "description": "Optional. What the loader does.",
    "source_system": "Optional. Where the data comes from.",
    "target": "Optional. Where the data is loaded to.",
    "schedule_cron": "Optional. Five-field cron expression, e.g. '30 2 * * *'. Empty = runs on demand.",
    "schedule_timezone": "Optional (default UTC). IANA time zone of the schedule, e.g. Europe/Berlin.",
    "grace_minutes": "Optional (default 15). How late a run may start before it counts as missed.",
    "max_duration_minutes": "Optional. Longest acceptable run, in minutes.",
    "expected_rows_min": "Optional. Fewest rows a run should write.",
    "expected_rows_max": "Optional. Most rows a run should write (not below the minimum).",
    "freshness_sla_minutes": "Optional. Maximum age of the loaded data, in minutes.",
    "default_severity": "Optional (default MEDIUM). CRITICAL, HIGH, MEDIUM or LOW.",
    "notification_hint": "Optional. Routing hint, e.g. a team or Slack channel.",
    "connection_host": "Optional. Source host.",
    "connection_port": "Optional. Source port.",
    "connection_database": "Optional. Source database.",
    "connection_user": "Optional. Source user.",
    "connection_password": "Optional, write-only. Stored encrypted; an empty cell keeps the stored value. "
    "Exports never contain it.",
}
REQUIRED = ("loader_code", "name", "owner")
# Columns an export adds for information; an import ignores them so exports re-import as they are.
INFO_COLUMNS = {"version": "Version number exported (ignored on import).", "state": "Its state (ignored on import)."}
EXAMPLE_ROW = {
    "loader_code": EXAMPLE_LOADER_CODE,  # refused if left in: it can change no real loader
    "name": "Daily sales load (example: replace this row)",
    "owner": "your-team-slug",
    "tags": "sales, daily",
    "is_paused": False,
    "description": "Previous day's sales into the warehouse",
    "source_system": "shop-postgres",
    "target": "dwh.sales_fact",
    "schedule_cron": "30 2 * * *",
    "schedule_timezone": "Europe/Berlin",
    "grace_minutes": 20,
    "max_duration_minutes": 45,
    "expected_rows_min": 10000,
    "expected_rows_max": 500000,
    "freshness_sla_minutes": 1440,
    "default_severity": "HIGH",
}
PROGRESS_EVERY = 500


@dataclass
class RowResult:
    row: int
    loader_code: str
    status: str  # new | changed | unchanged | error
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ImportReport:
    rows_read: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    error_rows: int = 0
    submitted: int = 0
    applied: bool = False
    file_errors: list[str] = field(default_factory=list)
    rows: list[RowResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.file_errors and self.error_rows == 0

    def as_dict(self, *, max_rows: int | None = None) -> dict[str, Any]:
        rows = self.rows if max_rows is None else [r for r in self.rows if r.status != "unchanged"][:max_rows]
        data = asdict(self)
        data["rows"] = [asdict(r) for r in rows]
        data["errors"] = [
            {"row": r.row, "column": column, "message": message} for r in self.rows for column, message in r.errors
        ]
        data["ok"] = self.ok
        return data


def _is_mask(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def _to_bool(value: Any) -> bool:
    text = _to_text(value).lower()
    if text in ("", "0", "false", "no", "n"):
        return False
    if text in ("1", "true", "yes", "y"):
        return True
    raise ValidationError(f"{value!r} is not TRUE or FALSE.")


def _contract_value(name: str, raw: Any) -> Any:
    """A cell as the model field's Python type (whether the value is allowed is the service's question)."""
    model_field = LoaderVersion._meta.get_field(name)
    text = _to_text(raw)
    if text == "":
        if model_field.null:
            return None
        if model_field.has_default() and not model_field.blank:
            return model_field.get_default()
        return ""
    return model_field.to_python(text)


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _tag_names(raw: Any) -> list[str]:
    names = [part.strip().lower() for part in _to_text(raw).replace(";", ",").split(",")]
    return sorted({n for n in names if n})


class _RowParser:
    """Turns one sheet row into the values the services take. Only a cell that cannot be read as
    its field's type is an error here; every rule on the values is the services'."""

    def __init__(self, *, headers: list[str]) -> None:
        self.headers = [h for h in headers if h in COLUMNS]

    def parse(self, values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        data: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        for column in self.headers:
            raw = values.get(column)
            if column != "loader_code" and _is_mask(raw):
                continue  # a masked value (from an export) means "unchanged", whatever the column
            try:
                if column in ("loader_code", "name", "owner"):
                    data[column] = _to_text(raw)
                elif column == "tags":
                    data[column] = _tag_names(raw)
                elif column == "is_paused":
                    data[column] = _to_bool(raw)
                elif column == "connection_password":
                    text = _to_text(raw)
                    if text and not _is_mask(text):
                        data[column] = text  # empty or the export's mask: keep the stored secret
                else:
                    data[column] = _contract_value(column, raw)
            except ValidationError as exc:
                errors.append((column, _messages(exc)))
        return data, errors


def _display(policy: FieldPolicy, name: str, value: Any) -> Any:
    if name in policy.secrets:
        return f"{MASK} (changed)" if value else "(cleared)"
    return policy.display(name, ", ".join(value) if isinstance(value, list) else value)


def _diff(
    loader: Loader, data: dict[str, Any], changed: list[str], policies: dict[str, FieldPolicy]
) -> list[tuple[str, Any, Any]]:
    basis = loader.open_version or loader.active_version
    rows = []
    for name in changed:
        if name in LoaderVersion.CONTRACT_FIELDS:
            policy = policies["version"]
            old = getattr(basis, name) if basis else None
        else:
            policy = policies["loader"]
            old = sorted(t.name for t in loader.tags.all()) if name == "tags" else getattr(loader, name)
            old = old.slug if isinstance(old, Team) else old
        if name in policy.hidden and name not in policy.secrets:
            rows.append((name, MASK, MASK))  # hidden from this role: say only that it changes
        else:
            rows.append(
                (
                    name,
                    _display(policy, name, old) if name not in policy.secrets else MASK,
                    _display(policy, name, data[name]),
                )
            )
    return rows


@lru_cache(maxsize=1)
def _contract_defaults() -> dict[str, Any]:
    probe = LoaderVersion()
    return {f: getattr(probe, f) for f in LoaderVersion.CONTRACT_FIELDS}


def _refusal_errors(refusal: ServiceError) -> list[tuple[str, str]]:
    """A service's refusal of a row as (column, message) pairs; what concerns the whole row
    (a rule across fields, a pending version) stands on its loader_code."""
    if isinstance(refusal, InvalidInput):
        return [
            ("loader_code" if field == "non_field_errors" else field, message)
            for field, messages in refusal.errors.items()
            for message in messages
        ]
    return [("loader_code", refusal.message)]


def _refuse(result: RowResult, refusal: ServiceError) -> None:
    result.status = "error"
    result.errors += _refusal_errors(refusal)


def _refuse_new(new: list[tuple[RowResult, dict[str, Any]]], refused: services.RowsRefused) -> None:
    for position, refusal in refused.refusals.items():
        _refuse(new[position][0], refusal)


def _row_new(result: RowResult, data: dict[str, Any], policies: dict[str, FieldPolicy]) -> None:
    """A row for a new loader: what it writes, shown (checked with the other new rows)."""
    defaults = _contract_defaults()
    written = [f for f in LoaderVersion.CONTRACT_FIELDS if f in data and data[f] != defaults[f]]
    result.status = "new"
    # Every field the row sets, its identity (name, owner, tags, paused) first.
    identity = [(f, _new_identity_display(policies["loader"], f, data[f])) for f in _IDENTITY_SHOWN if f in data]
    result.changes = [(f, None, shown) for f, shown in identity if shown is not None]
    result.changes += [(f, None, _display(policies["version"], f, data[f])) for f in written]


_IDENTITY_SHOWN = ("name", "owner", "tags", "is_paused")


def _new_identity_display(policy: FieldPolicy, name: str, value: Any) -> Any:
    """A new row's identity field as the preview shows it (None: nothing worth a line)."""
    if name == "tags" and not value:
        return None
    if name == "is_paused":
        return "yes" if value else None
    if name in policy.hidden:
        return MASK  # hidden from this role: say only that it is set
    return _display(policy, name, value)


def _row_edit(
    user: AbstractBaseUser, result: RowResult, loader: Loader, data: dict[str, Any], policies: dict[str, FieldPolicy]
) -> None:
    """A row for an existing loader: its changes as an edit makes them, or the edit's refusal."""
    changed = services.loader_changed_fields(loader=loader, data=data)
    result.changes = _diff(loader, data, changed, policies)
    result.status = "changed" if changed else "unchanged"
    try:
        services.loader_edit_check(user=user, loader=loader, data=data)
    except ServiceError as exc:
        _refuse(result, exc)


def _tally(report: ImportReport) -> None:
    statuses = [result.status for result in report.rows]
    report.new, report.changed = statuses.count("new"), statuses.count("changed")
    report.unchanged, report.error_rows = statuses.count("unchanged"), statuses.count("error")


def loaders_import(
    *,
    user: AbstractBaseUser,
    sheet: Sheet,
    dry_run: bool,
    submit: bool = False,
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check every row of ``sheet`` and, unless ``dry_run`` or any row is bad, write them all.

    New loaders are checked and created together by ``services.loaders_create_many``, rows
    for existing loaders by ``services.loader_edit_check`` and ``services.loader_edit``: a
    row is refused exactly as the API or the admin would refuse it. Returns a report with
    per-row status (new / changed / unchanged / error), field-level changes (protected
    values masked for ``user``) and every error with its row number and column.
    """
    permission_require(user, "loaders.add_loader", "import loaders")
    permission_require(user, "loaders.change_loaderversion", "import loaders")
    if submit:
        permission_require(user, "loaders.submit_loaderversion", "submit imported loaders for approval")
    report = ImportReport(rows_read=len(sheet.rows))
    missing = [c for c in REQUIRED if c not in sheet.headers]
    unknown = [
        h for h in sheet.original_headers if h.strip().lower() not in COLUMNS and h.strip().lower() not in INFO_COLUMNS
    ]
    if missing:
        report.file_errors.append(f"Missing required column(s): {', '.join(missing)}.")
    if unknown:
        report.file_errors.append(
            f"Unknown column(s): {', '.join(unknown)}. Download the template for the expected columns."
        )
    if report.file_errors:
        return report

    codes = {_to_text(r.values.get("loader_code")) for r in sheet.rows}
    existing = {loader.loader_code: loader for loader in selectors.loader_detail_list().filter(loader_code__in=codes)}
    parser = _RowParser(headers=sheet.headers)
    policies = {"version": policy_for(user, LoaderVersion), "loader": policy_for(user, Loader)}
    seen: dict[str, int] = {}
    new: list[tuple[RowResult, dict[str, Any]]] = []
    edits: list[tuple[RowResult, dict[str, Any]]] = []
    total = len(sheet.rows)
    for index, row in enumerate(sheet.rows, start=1):
        data, errors = parser.parse(row.values)
        code = data["loader_code"]
        result = RowResult(row=row.number, loader_code=code, status="error", errors=errors)
        if code and code in seen:
            errors.append(("loader_code", f"Duplicate loader_code {code!r} (also in row {seen[code]})."))
        elif code:
            seen[code] = row.number
        report.rows.append(result)
        if errors:
            pass
        elif code in existing:
            edit = {k: v for k, v in data.items() if k != "loader_code"}
            _row_edit(user, result, existing[code], edit, policies)
            edits.append((result, edit))
        else:
            _row_new(result, data, policies)
            new.append((result, data))
        if progress and index % PROGRESS_EVERY == 0:
            progress(index, total)
    if dry_run or any(result.errors for result in report.rows):
        if new:
            try:
                services.loaders_create_check(user=user, rows=[data for _, data in new], submit=submit)
            except services.RowsRefused as exc:
                _refuse_new(new, exc)
    else:
        try:
            with transaction.atomic():
                _apply(user=user, new=new, edits=edits, existing=existing, submit=submit, source=source, report=report)
        except ImportAborted:
            report.submitted = 0
        else:
            report.applied = True
            if progress:
                progress(total, total)
    _tally(report)
    return report


def _apply(
    *,
    user: AbstractBaseUser,
    new: list[tuple[RowResult, dict[str, Any]]],
    edits: list[tuple[RowResult, dict[str, Any]]],
    existing: dict[str, Loader],
    submit: bool,
    source: str,
    report: ImportReport,
) -> None:
    """Write checked rows; a row refused now (a concurrent change) is reported and undoes all."""
    reason = f"Imported from {source}"
    if new:
        try:
            services.loaders_create_many(user=user, rows=[data for _, data in new], reason=reason, submit=submit)
        except services.RowsRefused as exc:
            _refuse_new(new, exc)
            raise ImportAborted from exc
        report.submitted += len(new) if submit else 0
    for result, edit in edits:
        if result.status != "changed":
            continue
        contract_changed = any(name in LoaderVersion.CONTRACT_FIELDS for name, _old, _new in result.changes)
        try:
            loader = services.loader_edit(user=user, loader=existing[result.loader_code], data=edit, reason=reason)
            draft = Loader.objects.get(pk=loader.pk).open_version
            # Submit only a draft this import changed, never someone's draft it merely passed by.
            if submit and contract_changed and draft is not None and draft.state == VersionState.DRAFT:
                services.loader_version_submit(user=user, version=draft, comment=reason)
                report.submitted += 1
        except ServiceError as exc:
            _refuse(result, exc)
            raise ImportAborted from exc


class ImportAborted(Exception):
    """A row was refused while writing; everything written is rolled back."""


# --- export and template -------------------------------------------------------------


def export_columns(user: AbstractBaseUser) -> list[str]:
    """The columns ``user`` may export: secrets never, HIDDEN fields not for their role."""
    version_policy, loader_policy = policy_for(user, LoaderVersion), policy_for(user, Loader)
    columns = []
    for column in COLUMNS:
        if column in version_policy.secrets:
            continue
        if column in version_policy.hidden or column in loader_policy.hidden:
            continue
        columns.append(column)
    return [*columns, *INFO_COLUMNS]


def loaders_export(*, user: AbstractBaseUser, loaders: Iterable[Loader], file_format: str) -> bytes:
    """Export loaders with their current contract (the open draft/pending version, else the ACTIVE one),
    protected values masked for ``user`` and formula-like cells neutralised."""
    if not user.has_perm("loaders.view_loader"):
        raise PermissionRefused("Your role does not allow you to export loaders.")
    columns = export_columns(user)
    version_policy, loader_policy = policy_for(user, LoaderVersion), policy_for(user, Loader)

    def rows() -> Iterable[list[Any]]:
        for loader in loaders:
            # What an edit (and so a re-import) compares with.
            version = loader.edit_basis
            values: dict[str, Any] = {
                "loader_code": loader.loader_code,
                "name": loader_policy.display("name", loader.name),
                "owner": loader_policy.display("owner", loader.owner.slug),
                "tags": loader_policy.display("tags", ", ".join(t.name for t in loader.tags.all())),
                "is_paused": loader_policy.display("is_paused", loader.is_paused),
                "version": version.number if version else None,
                "state": version.state if version else None,
            }
            for name in LoaderVersion.CONTRACT_FIELDS:
                if version is not None and name in columns:
                    values[name] = version_policy.display(name, getattr(version, name))
            yield [values.get(column) for column in columns]

    return spreadsheet_write(headers=columns, rows=rows(), file_format=file_format)


def loaders_template() -> bytes:
    """The import template: headers, one example row, and a notes sheet explaining each column."""
    notes = [(column, text) for column, text in COLUMNS.items()]
    notes.append(
        (
            "(rules)",
            "One row per loader. New codes create a DRAFT; existing codes get their changes in a "
            "new DRAFT. Nothing becomes active without approval by a second person. A file with any bad "
            "row writes nothing.",
        )
    )
    example = [EXAMPLE_ROW.get(column) for column in COLUMNS]
    return spreadsheet_write(headers=list(COLUMNS), rows=[example], file_format="xlsx", notes=notes)


# --- import jobs: preview → confirm, in the request or in the background ---------------


def _progress_key(job_id: Any) -> str:
    return f"loader-import:{job_id}:progress"


def import_job_progress(job: ImportJob) -> tuple[int, int]:
    # Progress is a courtesy kept in the cache: while the cache is away it reads 0, not a 500.
    done = cache_call(lambda: cache.get(_progress_key(job.pk))) or 0
    return (job.rows_total if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED) else done), job.rows_total


def _sheet_dump(sheet: Sheet) -> bytes:
    """The checked rows, stored (encrypted) between preview and confirm: confirming
    does not parse the spreadsheet a second time."""
    rows = [[row.number, {k: _jsonable(v) for k, v in row.values.items()}] for row in sheet.rows]
    payload = {
        "headers": sheet.headers,
        "original_headers": sheet.original_headers,
        "file_format": sheet.file_format,
        "rows": rows,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date | dt.time) else value


def _sheet_load(data: bytes) -> Sheet:
    payload = json.loads(data)
    rows = [SheetRow(number=number, values=values) for number, values in payload["rows"]]
    return Sheet(
        headers=payload["headers"],
        original_headers=payload["original_headers"],
        rows=rows,
        file_format=payload["file_format"],
    )


def import_job_create(
    *, user: AbstractBaseUser, content: bytes, filename: str, dry_run: bool, submit: bool
) -> ImportJob:
    """Check the file, store it encrypted, and run the job now (small files) or queue it (large ones).

    Raises SpreadsheetError for a file we refuse; the job is not created then.
    """
    permission_require(user, "loaders.add_loader", "import loaders")
    sheet = spreadsheet_read(
        content=content,
        filename=filename,
        max_bytes=settings.LOADER_IMPORT_MAX_BYTES,
        max_rows=settings.LOADER_IMPORT_MAX_ROWS,
    )
    job = ImportJob.objects.create(
        created_by=user,
        filename=filename[:255],
        content=secret_encrypt_bytes(_sheet_dump(sheet)),
        dry_run=dry_run,
        submit=submit,
        rows_total=len(sheet.rows),
    )
    return _import_job_start(job, sheet)


def _import_job_start(job: ImportJob, sheet: Sheet) -> ImportJob:
    """Run a small job now, while the user waits; queue a large one for the worker."""
    if len(sheet.rows) <= settings.LOADER_IMPORT_SYNC_ROWS:
        import_job_run(job_id=job.pk, sheet=sheet)
        job.refresh_from_db()
    else:
        transaction.on_commit(lambda: _import_job_enqueue(job.pk))
    return job


QUEUE_UNAVAILABLE = (
    "The background queue (Redis) was unavailable, so this import did not start and nothing was written. "
    "Upload the file again in a few minutes."
)


def _import_job_enqueue(job_id: Any) -> None:
    """Queue a large import for the worker. Unlike detection and notifications, no sweep picks up a
    job that was never queued: with the broker away the job fails at once, saying so, instead of
    waiting QUEUED for ever or failing the upload with a 500."""
    from loaders.tasks import loader_import_run

    if not task_publish(loader_import_run, (str(job_id),)):
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.FAILED, error=QUEUE_UNAVAILABLE, finished_at=timezone.now(), content=b""
        )


def import_job_confirm(*, user: AbstractBaseUser, preview: ImportJob) -> ImportJob:
    """Run for real the file a preview checked; only its author may confirm it."""
    if preview.created_by_id != user.pk:
        raise PermissionRefused("Only the person who uploaded this file can confirm its import.")
    if not preview.dry_run or preview.status != ImportJob.Status.DONE or not preview.content:
        raise StateConflict("This import cannot be confirmed (it is not a finished preview, or was already used).")
    if not (preview.report or {}).get("ok"):
        raise StateConflict("The preview found errors; fix the file and upload it again.")
    try:
        sheet = _sheet_load(secret_decrypt_bytes(bytes(preview.content)))
    except ValueError:
        raise StateConflict("This preview can no longer be read (the encryption key changed); upload the file again.")
    job = ImportJob.objects.create(
        created_by=user,
        filename=preview.filename,
        content=bytes(preview.content),
        dry_run=False,
        submit=preview.submit,
        rows_total=len(sheet.rows),
    )
    ImportJob.objects.filter(pk=preview.pk).update(content=b"")
    return _import_job_start(job, sheet)


def import_jobs_cleanup(*, older_than: dt.timedelta = dt.timedelta(days=1)) -> int:
    """Drop the stored rows of previews never confirmed (they may hold secrets); keep the reports."""
    cutoff = timezone.now() - older_than
    finished_previews = ImportJob.objects.filter(dry_run=True, status=ImportJob.Status.DONE, created_at__lt=cutoff)
    return finished_previews.exclude(content=b"").update(content=b"")


def import_job_run(*, job_id: Any, sheet: Sheet | None = None) -> None:
    """Run a stored job (the Celery task calls this). Safe to deliver twice or to retry.

    The job row stays locked for the whole run, so a duplicate delivery waits and
    then finds the job finished; a worker killed mid-run rolls everything back,
    the job stays QUEUED, and the redelivered task runs it again.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("created_by").get(pk=job_id)
        if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            return
        try:
            with transaction.atomic():  # a failure rolls back to here, and the job can still be marked
                if sheet is None:
                    sheet = _sheet_load(secret_decrypt_bytes(bytes(job.content)))
                report = loaders_import(
                    user=job.created_by,
                    sheet=sheet,
                    dry_run=job.dry_run,
                    submit=job.submit,
                    source=job.filename,
                    progress=lambda done, total: cache_call(
                        lambda: cache.set(_progress_key(job.pk), done, timeout=3600)
                    ),
                )
        except ServiceError as exc:
            job.status, job.error = ImportJob.Status.FAILED, exc.message
        except Exception:
            logger.exception("loader import %s failed", job.pk)
            job.status, job.error = ImportJob.Status.FAILED, "The import failed unexpectedly; nothing was written."
        else:
            job.status = ImportJob.Status.DONE
            job.report = report.as_dict(max_rows=settings.LOADER_IMPORT_REPORT_ROWS)
        job.finished_at = timezone.now()
        if not job.dry_run:
            job.content = b""  # the rows may hold secrets: keep them no longer than needed
        job.save(update_fields=["status", "error", "report", "finished_at", "content"])
