"""What ETL jobs send: runs, signals, and the tokens they authenticate with.

A *signal* is one measured fact (the roadmap's fields); a *run* is one execution
of a loader, and finishing a run records its standard signals (duration, row
counts, status) so rules and dashboards read runs and signals the same way.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from etl_monitor.models import HashedToken
from loaders.models import Loader, LoaderVersion


class ValidationStatus(models.TextChoices):
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"
    WARNING = "WARNING", "Warning"


class MetricType(models.TextChoices):
    ROW_COUNT = "ROW_COUNT", "Row count"
    DURATION_SECONDS = "DURATION_SECONDS", "Duration (seconds)"
    ERROR_COUNT = "ERROR_COUNT", "Error count"
    LATENCY_P99_MS = "LATENCY_P99_MS", "Latency p99 (ms)"
    UPTIME_PERCENT = "UPTIME_PERCENT", "Uptime (%)"
    RUN_STATUS = "RUN_STATUS", "Run status"
    FRESHNESS_SECONDS = "FRESHNESS_SECONDS", "Freshness (seconds)"
    MEMORY_PERCENT = "MEMORY_PERCENT", "Memory used (% of limit)"
    CPU_CORES = "CPU_CORES", "CPU used (cores)"
    CUSTOM = "CUSTOM", "Custom"


class MetricSource(models.TextChoices):
    ETL = "ETL", "ETL job"
    PROMETHEUS = "PROMETHEUS", "Prometheus"
    ELASTICSEARCH = "ELASTICSEARCH", "Elasticsearch"
    CALCULATED = "CALCULATED", "Calculated"


class IngestToken(HashedToken):
    """A machine credential scoped to one loader. Only a SHA-256 hash is stored;
    the plaintext is shown once, at creation. API tokens write runs and signals;
    ping keys can only hit the ping URLs."""

    class Kind(models.TextChoices):
        API = "API", "API token (runs and signals)"
        PING = "PING", "Ping key (ping URLs only)"

    loader = models.ForeignKey(Loader, on_delete=models.CASCADE, related_name="ingest_tokens")
    kind = models.CharField(max_length=4, choices=Kind.choices, default=Kind.API)
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'airflow prod'.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(HashedToken.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.loader.loader_code} {self.get_kind_display()} {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    TIMED_OUT = "TIMED_OUT", "Timed out"


class Run(models.Model):
    """One execution of a loader. Runs of one loader may overlap (client run ids)."""

    run_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    loader = models.ForeignKey(Loader, on_delete=models.CASCADE, related_name="runs")
    loader_version = models.ForeignKey(
        LoaderVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version that was ACTIVE when the run started (none while onboarding).",
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    rows_read = models.BigIntegerField(null=True, blank=True)
    rows_written = models.BigIntegerField(null=True, blank=True)
    rows_rejected = models.BigIntegerField(null=True, blank=True)
    error_text = models.TextField(blank=True)
    log_excerpt = models.TextField(blank=True)
    exit_status = models.SmallIntegerField(null=True, blank=True)
    correlation_id = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=10, default="API")
    loader_paused = models.BooleanField(default=False, help_text="The loader was paused when this arrived.")
    no_active_version = models.BooleanField(default=False, help_text="The loader had no approved version yet.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["loader", "-started_at"], name="run_loader_started"),
            models.Index(fields=["status", "started_at"], name="run_status_started"),
            # Detection reads finished runs by the time they finished (run_failed, the anomaly series).
            models.Index(fields=["finished_at"], name="run_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.loader.loader_code} run {self.run_id} ({self.status})"


class Signal(models.Model):
    """One measured fact about a loader (the roadmap's signal)."""

    loader = models.ForeignKey(Loader, on_delete=models.CASCADE, related_name="signals", db_index=False)
    signal_key = models.CharField(max_length=200)
    signal_value = models.CharField(max_length=500, blank=True, help_text="As sent (number or text).")
    value_number = models.FloatField(null=True, blank=True, help_text="The value as a number, when it is one.")
    validation_status = models.CharField(max_length=10, choices=ValidationStatus.choices)
    metric_type = models.CharField(max_length=40, choices=MetricType.choices, default=MetricType.CUSTOM)
    metric_source = models.CharField(max_length=20, choices=MetricSource.choices, default=MetricSource.ETL)
    captured_at = models.DateTimeField()
    received_at = models.DateTimeField()
    correlation_id = models.CharField(max_length=100, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="signals")
    attributes = models.JSONField(null=True, blank=True)
    # NULL (not "") for "no key"; uniqueness is kept by SignalKey.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    loader_paused = models.BooleanField(default=False)
    no_active_version = models.BooleanField(default=False)

    class Meta:
        ordering = ["-captured_at", "-id"]
        indexes = [
            models.Index(fields=["loader", "captured_at"], name="signal_loader_captured"),
            models.Index(fields=["validation_status", "captured_at"], name="signal_status_captured"),
            models.Index(fields=["captured_at"], name="signal_captured"),
            models.Index(fields=["correlation_id"], name="signal_correlation", condition=~Q(correlation_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.loader_id}:{self.signal_key}={self.signal_value} ({self.validation_status})"


# The signals the platform writes itself when a run finishes (``services._run_signals``). They
# restate the run, so the run's own rule judges them: a failed run is one "run failed" incident, not
# also a failure rate of its own status, duration and row counts.
RUN_SIGNAL_KEYS = ("run_status", "run_duration_seconds", "rows_read", "rows_written", "rows_rejected")
RUN_SIGNAL_IDEMPOTENCY_PREFIX = "run:"


def run_signals_q() -> Q:
    """The platform's own signals of finished runs: attached to the run, under one of
    RUN_SIGNAL_KEYS and keyed ``run:<run id>:<key>``; a job's own signals never match all three."""
    return Q(
        run__isnull=False, signal_key__in=RUN_SIGNAL_KEYS, idempotency_key__startswith=RUN_SIGNAL_IDEMPOTENCY_PREFIX
    )


class SignalKey(models.Model):
    """Idempotency keys of stored signals, one per (loader, key).

    Kept apart from the signals table because that table is partitioned by time
    on PostgreSQL, where a unique index must include the partition column; this
    small table makes "the same key is stored once" hold whatever the timestamps.
    """

    loader = models.ForeignKey(Loader, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["loader", "key"], name="signalkey_unique")]

    def __str__(self) -> str:
        return f"{self.loader_id}:{self.key}"
