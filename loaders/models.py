"""The loader registry: a Loader (stable identity) and its LoaderVersions (the monitoring contract).

A version moves DRAFT → PENDING_APPROVAL → ACTIVE → SUPERSEDED, or
PENDING_APPROVAL → REJECTED. Monitoring reads only the ACTIVE version, so an edit
is never live until another person approved it. The transitions on the model are
bare state changes; who may trigger them (roles, four-eyes) is decided in
``loaders.services``, the only code that calls them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from etl_monitor.crypto import EncryptedTextField
from loaders.validators import (
    validate_cron_expression,
    validate_loader_code,
    validate_timezone_name,
)


class Severity(models.TextChoices):
    CRITICAL = "CRITICAL", "Critical"
    HIGH = "HIGH", "High"
    MEDIUM = "MEDIUM", "Medium"
    LOW = "LOW", "Low"


class VersionState(models.TextChoices):
    DRAFT = "DRAFT", "Draft"
    PENDING_APPROVAL = "PENDING_APPROVAL", "Pending approval"
    ACTIVE = "ACTIVE", "Active"
    SUPERSEDED = "SUPERSEDED", "Superseded"
    REJECTED = "REJECTED", "Rejected"


OPEN_STATES = (VersionState.DRAFT, VersionState.PENDING_APPROVAL)


class Team(models.Model):
    """An owning team: who a loader belongs to and, later, who hears about it."""

    slug = models.SlugField(max_length=64, unique=True, help_text="Short stable identifier, e.g. data-platform.")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, help_text="Team mailbox for notifications.")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Loader(models.Model):
    """A monitored ETL job. Its identity fields change directly (with history);
    its monitoring contract changes only through an approved version."""

    loader_code = models.CharField(
        max_length=64,
        unique=True,
        validators=[validate_loader_code],
        help_text="Upper-case identifier such as SALES-DAILY. Cannot change once a version has been active.",
    )
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="loaders")
    tags = models.ManyToManyField(Tag, blank=True, related_name="loaders")
    is_paused = models.BooleanField(
        "paused", default=False, help_text="A paused loader is kept in the registry but not monitored."
    )
    first_activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = HistoricalRecords(m2m_fields=[tags])

    class Meta:
        ordering = ["loader_code"]

    def __str__(self) -> str:
        return self.loader_code

    def refresh_from_db(self, *args: object, **kwargs: object) -> None:
        self.__dict__.pop("current_versions", None)
        super().refresh_from_db(*args, **kwargs)

    @property
    def code_locked(self) -> bool:
        return self.first_activated_at is not None

    def _current_versions(self) -> list[LoaderVersion]:
        cached = getattr(self, "current_versions", None)
        if cached is None:
            # Cached on the instance: services that change versions drop it (loader_edit).
            cached = self.current_versions = list(self.versions.filter(state__in=[VersionState.ACTIVE, *OPEN_STATES]))
        return cached

    @property
    def active_version(self) -> LoaderVersion | None:
        return next((v for v in self._current_versions() if v.state == VersionState.ACTIVE), None)

    @property
    def open_version(self) -> LoaderVersion | None:
        """The DRAFT or PENDING_APPROVAL version, if any (at most one exists)."""
        return next((v for v in self._current_versions() if v.state in OPEN_STATES), None)

    @property
    def edit_basis(self) -> LoaderVersion | None:
        """What an edit changes: the open version, else the ACTIVE one, else the newest
        (a REJECTED first version: a new draft would start from it)."""
        basis = self.open_version or self.active_version
        if basis is None:
            basis = self.versions.order_by("-number").first()
        return basis

    @property
    def has_pending_approval(self) -> bool:
        open_version = self.open_version
        return open_version is not None and open_version.state == VersionState.PENDING_APPROVAL


class LoaderVersion(FSMModelMixin, models.Model):
    """One revision of a loader's monitoring contract."""

    # The fields that make up the contract: copied into a new draft, editable on a draft.
    CONTRACT_FIELDS = (
        "description",
        "source_system",
        "target",
        "schedule_cron",
        "schedule_timezone",
        "grace_minutes",
        "max_duration_minutes",
        "expected_rows_min",
        "expected_rows_max",
        "freshness_sla_minutes",
        "default_severity",
        "notification_hint",
        "connection_host",
        "connection_port",
        "connection_database",
        "connection_user",
        "connection_password",
    )
    SECRET_FIELDS = ("connection_password",)

    loader = models.ForeignKey(Loader, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    state = FSMField(default=VersionState.DRAFT, choices=VersionState.choices, protected=True, db_index=True)

    description = models.TextField(blank=True)
    source_system = models.CharField(max_length=200, blank=True, help_text="Where the data comes from.")
    target = models.CharField(max_length=200, blank=True, help_text="Where the data is loaded to.")
    schedule_cron = models.CharField(
        "schedule (cron)",
        max_length=120,
        blank=True,
        validators=[validate_cron_expression],
        help_text="Five-field cron expression, e.g. '30 2 * * *'. Empty for loaders that run on demand.",
    )
    schedule_timezone = models.CharField(
        "timezone",
        max_length=64,
        default="UTC",
        validators=[validate_timezone_name],
        help_text="IANA time zone the cron expression is read in, e.g. Europe/Berlin.",
    )
    grace_minutes = models.PositiveIntegerField(
        default=15, help_text="How late a run may start before it counts as missed."
    )
    max_duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    expected_rows_min = models.PositiveBigIntegerField(null=True, blank=True)
    expected_rows_max = models.PositiveBigIntegerField(null=True, blank=True)
    freshness_sla_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Maximum age of the loaded data before it counts as stale."
    )
    default_severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    notification_hint = models.CharField(
        max_length=200, blank=True, help_text="Routing hint for notifications, e.g. a team or Slack channel."
    )
    connection_host = models.CharField(max_length=255, blank=True)
    connection_port = models.PositiveIntegerField(null=True, blank=True)
    connection_database = models.CharField(max_length=200, blank=True)
    connection_user = models.CharField(max_length=200, blank=True)
    connection_password = EncryptedTextField(blank=True, help_text="Stored encrypted; never displayed.")

    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_comment = models.TextField(
        blank=True, help_text="What the submitter told the approvers (the history's reason holds only 100 characters)."
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who approved or rejected this version.",
    )
    decision_comment = models.TextField(blank=True, help_text="Approval comment or rejection reason.")
    superseded_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["loader", "-number"]
        permissions = [
            ("submit_loaderversion", "Can submit a loader version for approval"),
            ("approve_loaderversion", "Can approve or reject a loader version"),
            ("withdraw_any_loaderversion", "Can withdraw a version someone else submitted"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["loader", "number"], name="loaderversion_unique_number"),
            models.UniqueConstraint(
                fields=["loader"],
                condition=Q(state__in=["DRAFT", "PENDING_APPROVAL"]),
                name="loaderversion_one_open_per_loader",
                violation_error_message="This loader already has a draft or a version pending approval.",
            ),
            models.UniqueConstraint(
                fields=["loader"],
                condition=Q(state="ACTIVE"),
                name="loaderversion_one_active_per_loader",
                violation_error_message="This loader already has an active version.",
            ),
            models.CheckConstraint(
                condition=Q(expected_rows_min__isnull=True)
                | Q(expected_rows_max__isnull=True)
                | Q(expected_rows_min__lte=models.F("expected_rows_max")),
                name="loaderversion_rows_min_le_max",
                violation_error_message="Expected rows minimum must not exceed the maximum.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loader.loader_code} v{self.number} ({self.get_state_display()})"

    @property
    def is_editable(self) -> bool:
        return self.state == VersionState.DRAFT

    # --- state changes (called only by loaders.services) ---------------------

    @transition(field=state, source=VersionState.DRAFT, target=VersionState.PENDING_APPROVAL)
    def submit(self) -> None:
        pass

    @transition(field=state, source=VersionState.PENDING_APPROVAL, target=VersionState.DRAFT)
    def withdraw(self) -> None:
        pass

    @transition(field=state, source=VersionState.PENDING_APPROVAL, target=VersionState.ACTIVE)
    def approve(self) -> None:
        pass

    @transition(field=state, source=VersionState.PENDING_APPROVAL, target=VersionState.REJECTED)
    def reject(self) -> None:
        pass

    @transition(field=state, source=VersionState.ACTIVE, target=VersionState.SUPERSEDED)
    def supersede(self) -> None:
        pass


class BackgroundJob(models.Model):
    """What the registry's background jobs (imports, exports) share: who asked, when, how far."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class ImportJob(BackgroundJob):
    """One uploaded loader spreadsheet: a preview (dry run) or a real import.

    The file is stored encrypted (it may hold connection secrets) and dropped
    once a real import has run; large files run in the background with progress.
    """

    filename = models.CharField(max_length=255)
    content = models.BinaryField(editable=False)
    dry_run = models.BooleanField(default=True)
    submit = models.BooleanField(default=False, help_text="Submit the drafts for approval in the same step.")
    report = models.JSONField(null=True, blank=True)

    class Meta(BackgroundJob.Meta):
        verbose_name = "loader import"

    def __str__(self) -> str:
        kind = "preview" if self.dry_run else "import"
        return f"{kind} of {self.filename} ({self.get_status_display().lower()})"


class ExportJob(BackgroundJob):
    """One export of loaders to a spreadsheet, too large to write while the user waits.

    The worker writes the file as its requester may see it (field protection applied,
    secrets never included); only the requester and Admins may download it, and the hourly
    cleanup drops it LOADER_EXPORT_KEEP_HOURS after it was written. The row stays, saying
    who exported how many loaders and when.
    """

    class Format(models.TextChoices):
        XLSX = "xlsx", "Excel (.xlsx)"
        CSV = "csv", "CSV"

    file_format = models.CharField(max_length=4, choices=Format.choices, default=Format.XLSX)
    # The loaders chosen when the export was asked for, in export order; emptied once it has run.
    loader_ids = models.JSONField(default=list, editable=False)
    content = models.BinaryField(editable=False, default=b"")

    class Meta(BackgroundJob.Meta):
        verbose_name = "loader export"

    def __str__(self) -> str:
        return f"export of {self.rows_total} loaders ({self.get_status_display().lower()})"


class PendingApproval(LoaderVersion):
    """Proxy for the admin's "Waiting for my approval" list."""

    class Meta:
        proxy = True
        verbose_name = "version waiting for my approval"
        verbose_name_plural = "waiting for my approval"
