"""Bulk import and export of loaders (xlsx / csv).

One spreadsheet row is one loader, with the same flat fields as the API. The
import validates every row with the model's own field validators and the same
rules as the services (four-eyes, field protection, pending versions), reports
every bad row with its row number and column, and writes all or nothing:

- new loaders get a DRAFT v1 (or PENDING_APPROVAL with ``submit``), written
  with bulk inserts *and* their history rows — the row-by-row path of a
  generic importer is ~50× slower at 10,000 rows;
- existing loaders go through ``services.loader_edit`` (a DRAFT from the ACTIVE
  version), exactly like an edit in the admin.

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
from simple_history.utils import bulk_create_with_history

from etl_monitor.crypto import secret_decrypt_bytes, secret_encrypt_bytes
from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError, StateConflict
from etl_monitor.outage import cache_call, task_publish
from etl_monitor.permissions import permission_require
from etl_monitor.protection import MASK, FieldPolicy, policy_for
from loaders import selectors, services
from loaders.models import ImportJob, Loader, LoaderVersion, Tag, Team, VersionState
from loaders.spreadsheets import Sheet, SheetRow, spreadsheet_read, spreadsheet_write
from loaders.validators import validate_loader_code

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
IDENTITY = ("name", "owner", "tags", "is_paused")
EXAMPLE_ROW = {
    "loader_code": "SALES-DAILY",
    "name": "Daily sales load",
    "owner": "data-platform",
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
    """Convert a cell into the model field's Python value with the field's own validation."""
    model_field = LoaderVersion._meta.get_field(name)
    text = _to_text(raw)
    if text == "":
        if model_field.null:
            return None
        if model_field.has_default() and not model_field.blank:
            return model_field.get_default()
        return ""
    value = model_field.to_python(text)
    model_field.run_validators(value)
    if model_field.choices and value not in dict(model_field.choices):
        allowed = ", ".join(str(k) for k, _ in model_field.choices)
        raise ValidationError(f"{text!r} is not one of {allowed}.")
    if hasattr(model_field, "max_length") and model_field.max_length and len(str(value)) > model_field.max_length:
        raise ValidationError(f"At most {model_field.max_length} characters.")
    return value


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _tag_names(raw: Any) -> list[str]:
    names = [part.strip().lower() for part in _to_text(raw).replace(";", ",").split(",")]
    return sorted({n for n in names if n})


class _RowParser:
    """Turns one sheet row into validated loader and contract values, or errors."""

    def __init__(self, *, headers: list[str], teams: dict[str, Team]) -> None:
        self.headers = [h for h in headers if h in COLUMNS]
        self.teams = teams

    def parse(self, values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        data: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        for column in self.headers:
            raw = values.get(column)
            if column != "loader_code" and _is_mask(raw):
                continue  # a masked value (from an export) means "unchanged", whatever the column
            try:
                if column == "loader_code":
                    code = _to_text(raw)
                    if not code:
                        raise ValidationError("Required.")
                    validate_loader_code(code)
                    data[column] = code
                elif column == "name":
                    name = _to_text(raw)
                    if not name:
                        raise ValidationError("Required.")
                    if len(name) > 200:
                        raise ValidationError("At most 200 characters.")
                    data[column] = name
                elif column == "owner":
                    slug = _to_text(raw)
                    if not slug:
                        raise ValidationError("Required.")
                    if slug not in self.teams:
                        raise ValidationError(f"Unknown team {slug!r}. Create the team first or use an existing slug.")
                    data[column] = slug
                elif column == "tags":
                    data[column] = _tag_names(raw)
                    for tag in data[column]:
                        Tag._meta.get_field("name").run_validators(tag)
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
        low, high = data.get("expected_rows_min"), data.get("expected_rows_max")
        if low is not None and high is not None and low > high:
            errors.append(("expected_rows_min", f"Minimum {low} is above the maximum {high}."))
        return data, errors


def _display(policy: FieldPolicy, name: str, value: Any) -> Any:
    if name in policy.secrets:
        return f"{MASK} (changed)" if value else "(cleared)"
    return policy.display(name, ", ".join(value) if isinstance(value, list) else value)


def _diff(loader: Loader, data: dict[str, Any], policies: dict[str, FieldPolicy]) -> list[tuple[str, Any, Any]]:
    changed = services.loader_changed_fields(loader=loader, data=data)
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


def loaders_import(
    *,
    user: AbstractBaseUser,
    sheet: Sheet,
    dry_run: bool,
    submit: bool = False,
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate every row of ``sheet`` and, unless ``dry_run`` or any row is bad, write them all.

    Returns a report with per-row status (new / changed / unchanged / error),
    field-level changes (protected values masked for ``user``) and every error
    with its row number and column.
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
    teams = {team.slug: team for team in Team.objects.all()}
    parser = _RowParser(headers=sheet.headers, teams=teams)
    policies = {"version": policy_for(user, LoaderVersion), "loader": policy_for(user, Loader)}
    may_add_tags = user.has_perm("loaders.add_tag")
    known_tags = set(Tag.objects.values_list("name", flat=True)) if not may_add_tags else set()
    seen: dict[str, int] = {}
    plans: list[tuple[RowResult, dict[str, Any]]] = []
    total = len(sheet.rows)
    for index, row in enumerate(sheet.rows, start=1):
        data, errors = parser.parse(row.values)
        code = data.get("loader_code") or _to_text(row.values.get("loader_code"))
        result = RowResult(row=row.number, loader_code=code, status="error")
        if code and code in seen:
            errors.append(("loader_code", f"Duplicate loader_code {code!r} (also in row {seen[code]})."))
        elif code:
            seen[code] = row.number
        loader = existing.get(code)
        unknown_tags = [] if may_add_tags else sorted(set(data.get("tags", [])) - known_tags)
        if unknown_tags:
            errors.append(("tags", f"Unknown tag(s) {', '.join(unknown_tags)}; your role cannot create tags."))
        if not errors:
            errors += _plan_row(result, loader, data, policies)
        result.errors = errors
        if errors:
            result.status = "error"
            report.error_rows += 1
        else:
            setattr(report, result.status, getattr(report, result.status) + 1)
        plans.append((result, data))
        if progress and index % PROGRESS_EVERY == 0:
            progress(index, total)
    report.rows = [result for result, _ in plans]
    if dry_run or not report.ok:
        return report
    try:
        with transaction.atomic():
            _apply(user=user, plans=plans, existing=existing, teams=teams, submit=submit, source=source, report=report)
    except ImportAborted as exc:
        return exc.report
    report.applied = True
    if progress:
        progress(total, total)
    return report


@lru_cache(maxsize=1)
def _contract_defaults() -> dict[str, Any]:
    probe = LoaderVersion()
    return {f: getattr(probe, f) for f in LoaderVersion.CONTRACT_FIELDS}


def _plan_row(result: RowResult, loader: Loader | None, data: dict[str, Any], policies: dict[str, FieldPolicy]) -> list:
    """Decide new / changed / unchanged for a valid row; return protection or state errors."""
    errors: list[tuple[str, str]] = []
    if loader is None:
        if "name" not in data or "owner" not in data:
            return [("loader_code", "A new loader needs name and owner.")]
        defaults = _contract_defaults()
        written = [f for f in LoaderVersion.CONTRACT_FIELDS if f in data and data[f] != defaults[f]]
        result.status = "new"
        result.changes = [(f, None, _display(policies["version"], f, data[f])) for f in written]
        for policy, fields in (
            (policies["version"], written),
            (policies["loader"], [f for f in ("tags", "is_paused") if data.get(f)]),
        ):
            try:
                policy.check_write(fields)
            except InvalidInput as exc:
                errors += [(f, " ".join(m)) for f, m in exc.errors.items()]
        return errors
    edit = {k: v for k, v in data.items() if k != "loader_code"}
    result.changes = _diff(loader, edit, policies)
    changed = [name for name, _old, _new in result.changes]
    result.status = "changed" if changed else "unchanged"
    contract_changed = [f for f in changed if f in LoaderVersion.CONTRACT_FIELDS]
    open_version = loader.open_version
    if contract_changed and open_version is not None and open_version.state == VersionState.PENDING_APPROVAL:
        errors.append(
            (
                "loader_code",
                f"v{open_version.number} of {loader.loader_code} is pending approval; "
                "withdraw it or wait for the decision before importing changes.",
            )
        )
    for policy, fields in (
        (policies["version"], contract_changed),
        (policies["loader"], [f for f in changed if f in IDENTITY]),
    ):
        try:
            policy.check_write(fields)
        except InvalidInput as exc:
            errors += [(f, " ".join(m)) for f, m in exc.errors.items()]
    return errors


def _created_history_tags(links: list[Any]) -> None:
    """The tags of each loader's "created" history row, as a save would have recorded them (bulk
    creation writes the history rows before the tag links exist). ``links``: the new through rows."""
    if not links:
        return
    Through = Loader.history.model._meta.get_field("historicalloader_tags").related_model
    created = dict(
        Loader.history.filter(id__in={link.loader_id for link in links}, history_type="+").values_list(
            "id", "history_id"
        )
    )
    Through.objects.bulk_create(
        [
            Through(id=link.pk, history_id=created[link.loader_id], loader_id=link.loader_id, tag_id=link.tag_id)
            for link in links
        ],
        batch_size=2000,
    )


def _apply(
    *,
    user: AbstractBaseUser,
    plans: list[tuple[RowResult, dict[str, Any]]],
    existing: dict[str, Loader],
    teams: dict[str, Team],
    submit: bool,
    source: str,
    report: ImportReport,
) -> None:
    reason = f"Imported from {source}"[:100]
    now = timezone.now()
    new_rows = [(r, d) for r, d in plans if r.status == "new"]
    if new_rows:
        wanted_tags = {t for _r, d in new_rows for t in d.get("tags", [])}
        Tag.objects.bulk_create([Tag(name=t) for t in wanted_tags], ignore_conflicts=True)
        tags = {t.name: t for t in Tag.objects.filter(name__in=wanted_tags)}
        loaders = [
            Loader(
                loader_code=d["loader_code"],
                name=d["name"],
                owner=teams[d["owner"]],
                is_paused=d.get("is_paused", False),
                created_by=user,
                created_at=now,
                updated_at=now,
            )
            for _r, d in new_rows
        ]
        loaders = bulk_create_with_history(
            loaders, Loader, batch_size=1000, default_user=user, default_change_reason=reason, default_date=now
        )
        by_code = {loader.loader_code: loader for loader in loaders}
        through = Loader.tags.through
        links = through.objects.bulk_create(
            [
                through(loader_id=by_code[d["loader_code"]].pk, tag_id=tags[t].pk)
                for _r, d in new_rows
                for t in d.get("tags", [])
            ],
            batch_size=2000,
        )
        _created_history_tags(links)
        state = VersionState.PENDING_APPROVAL if submit else VersionState.DRAFT
        versions = []
        for _r, d in new_rows:
            version = LoaderVersion(
                loader=by_code[d["loader_code"]],
                number=1,
                state=state,
                created_by=user,
                submitted_by=user if submit else None,
                submitted_at=now if submit else None,
                **{f: d[f] for f in LoaderVersion.CONTRACT_FIELDS if f in d},
            )
            versions.append(version)
        bulk_create_with_history(
            versions,
            LoaderVersion,
            batch_size=1000,
            default_user=user,
            default_change_reason=reason + (" and submitted for approval" if submit else ""),
            default_date=now,
        )
        if submit:
            report.submitted += len(versions)
    for result, data in plans:
        if result.status != "changed":
            continue
        loader = existing[result.loader_code]
        edit = {k: v for k, v in data.items() if k != "loader_code"}
        contract_changed = any(name in LoaderVersion.CONTRACT_FIELDS for name, _old, _new in result.changes)
        try:
            loader = services.loader_edit(user=user, loader=loader, data=edit, reason=reason)
            draft = Loader.objects.get(pk=loader.pk).open_version
            # Submit only a draft this import changed, never someone's draft it merely passed by.
            if submit and contract_changed and draft is not None and draft.state == VersionState.DRAFT:
                services.loader_version_submit(user=user, version=draft, comment=reason)
                report.submitted += 1
        except ServiceError as exc:
            # Validated above; a concurrent change can still refuse it: report the row and undo everything.
            result.status = "error"
            result.errors.append(("loader_code", str(exc) if isinstance(exc, InvalidInput) else exc.message))
            report.error_rows += 1
            raise ImportAborted(report) from exc


class ImportAborted(Exception):
    """A row failed while writing (a concurrent change); nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__("The import was rolled back.")
        self.report = report


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
    if len(sheet.rows) <= settings.LOADER_IMPORT_SYNC_ROWS:
        import_job_run(job_id=job.pk, sheet=sheet)
        job.refresh_from_db()
    else:
        transaction.on_commit(lambda: _import_job_enqueue(job.pk))
    return job


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
