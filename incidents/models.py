"""Detection rules, incidents and silences.

A *rule* (the roadmap's ``incident_detection_rules``) names a registered *kind*
(``incidents.kinds``) with validated parameters — never SQL — plus threshold,
window, severity and scope. Evaluating it yields measurements per *subject*
(a loader, or a series of an external source); a breach opens or updates the
incident whose fingerprint is rule + subject. One OPEN/ACKNOWLEDGED incident
per fingerprint is enforced by the database.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from loaders.models import BackgroundJob, Loader, Severity, Tag, Team


class RuleType(models.TextChoices):
    TRANSACTION = "TRANSACTION", "Transaction (ETL runs and signals)"
    LOG = "LOG", "Log"
    INTEGRATION = "INTEGRATION", "Integration"
    INFRASTRUCTURE = "INFRASTRUCTURE", "Infrastructure"


class Operator(models.TextChoices):
    GT = "GT", ">"
    GTE = "GTE", "≥"
    LT = "LT", "<"
    LTE = "LTE", "≤"
    EQ = "EQ", "="
    NEQ = "NEQ", "≠"
    EXISTS = "EXISTS", "exists"


class Scope(models.TextChoices):
    ALL = "ALL", "All loaders"
    LOADERS = "LOADERS", "Listed loaders"
    TAG = "TAG", "Loaders with a tag"
    OWNER = "OWNER", "Loaders of a team"


class DetectionRule(models.Model):
    """One database-driven detection rule."""

    name = models.CharField(max_length=200, unique=True)
    rule_type = models.CharField(max_length=20, choices=RuleType.choices, default=RuleType.TRANSACTION)
    kind = models.CharField(max_length=50, help_text="A registered rule kind, e.g. signal_failure_rate.")
    params = models.JSONField(default=dict, blank=True, help_text="Parameters of the kind (validated per kind).")
    operator = models.CharField(max_length=6, choices=Operator.choices, default=Operator.GT)
    threshold = models.FloatField(null=True, blank=True)
    window_seconds = models.PositiveIntegerField(default=300)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    message = models.CharField(
        max_length=500, blank=True, help_text="Alert text; may use {subject}, {value}, {threshold}, {window}."
    )
    suggestion = models.TextField(blank=True, help_text="Suggested action; same placeholders as the message.")
    runbook_url = models.URLField(blank=True)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.ALL)
    scope_loaders = models.ManyToManyField(Loader, blank=True, related_name="+")
    scope_tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    scope_owner = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    interval_seconds = models.PositiveIntegerField(default=60, help_text="How often the rule is evaluated.")
    open_after = models.PositiveSmallIntegerField(
        default=1, help_text="Consecutive breaching evaluations before an incident opens (hysteresis)."
    )
    resolve_after_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the condition must stay clear before the incident resolves by itself."
    )
    enabled = models.BooleanField(default=True)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(m2m_fields=[scope_loaders])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IncidentStatus(models.TextChoices):
    OPEN = "OPEN", "Open"
    ACKNOWLEDGED = "ACKNOWLEDGED", "Acknowledged"
    RESOLVED = "RESOLVED", "Resolved"
    CLOSED = "CLOSED", "Closed"


ACTIVE_STATUSES = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)


class Incident(FSMModelMixin, models.Model):
    """Something that went wrong, deduplicated by fingerprint (rule + subject)."""

    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    category = models.CharField(max_length=20, choices=RuleType.choices)
    rule = models.ForeignKey(DetectionRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    loader = models.ForeignKey(Loader, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    subject = models.CharField(max_length=300, help_text="What the incident is about (a loader code, a series).")
    fingerprint = models.CharField(max_length=64, db_index=True)
    status = FSMField(default=IncidentStatus.OPEN, choices=IncidentStatus.choices, protected=True, db_index=True)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="The measurements that fired the rule.")
    suggestion = models.TextField(blank=True)
    impact = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=100, blank=True)
    suppressed = models.BooleanField(default=False, help_text="A silence matched: recorded, nobody notified.")
    flapping = models.BooleanField(default=False)
    timeline_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the last opened / fired-again entry was written."
    )
    external_key = models.CharField(max_length=50, blank=True, help_text="Ticket key (Jira), when one exists.")
    external_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=["OPEN", "ACKNOWLEDGED"]),
                name="incident_one_active_per_fingerprint",
            )
        ]
        indexes = [models.Index(fields=["status", "severity", "-last_seen"], name="incident_status_severity")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    # --- state changes (called only by incidents.services and incidents.detection)

    @transition(field=status, source=IncidentStatus.OPEN, target=IncidentStatus.ACKNOWLEDGED)
    def acknowledge(self) -> None:
        pass

    @transition(field=status, source=ACTIVE_STATUSES, target=IncidentStatus.RESOLVED)
    def resolve(self) -> None:
        pass

    @transition(field=status, source=IncidentStatus.RESOLVED, target=IncidentStatus.OPEN)
    def reopen(self) -> None:
        pass

    @transition(field=status, source=[*ACTIVE_STATUSES, IncidentStatus.RESOLVED], target=IncidentStatus.CLOSED)
    def close(self) -> None:
        pass


class EventKind(models.TextChoices):
    OPENED = "OPENED", "Opened"
    REFIRED = "REFIRED", "Fired again"
    ACKNOWLEDGED = "ACKNOWLEDGED", "Acknowledged"
    COMMENTED = "COMMENTED", "Comment"
    RESOLVED = "RESOLVED", "Resolved"
    REOPENED = "REOPENED", "Reopened"
    CLOSED = "CLOSED", "Closed"
    SUPPRESSED = "SUPPRESSED", "Suppressed by a silence"
    SILENCED = "SILENCED", "Silence created"
    FLAPPING = "FLAPPING", "Marked flapping"
    ESCALATED = "ESCALATED", "Escalated"
    NOTIFIED = "NOTIFIED", "Notified"
    NOT_NOTIFIED = "NOT_NOTIFIED", "Not notified"
    NOTIFY_FAILED = "NOTIFY_FAILED", "Notification failed"


class IncidentEvent(models.Model):
    """The incident's timeline, and the outbox later features consume (notifications, Jira)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["incident", "at"], name="incidentevent_incident_at")]

    def __str__(self) -> str:
        return f"{self.incident_id} {self.kind} {self.at:%Y-%m-%d %H:%M}"


class RuleSubjectState(models.Model):
    """Per rule and subject: what hysteresis and flap detection need to remember."""

    rule = models.ForeignKey(DetectionRule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=300)
    consecutive_breaches = models.PositiveIntegerField(default=0)
    clear_since = models.DateTimeField(null=True, blank=True)
    transitions = models.JSONField(default=list, blank=True, help_text="Recent open/resolve times (flapping).")
    episode = models.CharField(
        max_length=300,
        blank=True,
        help_text="The breach the subject is in, or was last in (the latest failed run, the missed slot…): "
        "the same breach measured again is not a new occurrence and never reopens a resolved incident.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], name="rulesubjectstate_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.subject}"


class AnomalyState(models.Model):
    """Per anomaly rule and subject: the series' learned baseline, so a detection cycle only feeds
    the points that arrived since ``last_at`` (incremental, never a refit of the whole history).

    ``detector`` is ``SeriesDetector.to_dict()``; ``verdict`` what the latest point scored (measured
    again at every evaluation until a new point arrives); ``gap_seconds`` the usual time between
    points (an exponential average), against which missing data is judged; ``version_number`` the
    loader version whose approval was last taken as a known change point."""

    rule = models.ForeignKey(DetectionRule, on_delete=models.CASCADE, related_name="anomaly_states")
    subject = models.CharField(max_length=300)
    loader = models.ForeignKey(Loader, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    detector = models.JSONField(default=dict)
    verdict = models.JSONField(default=dict, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)
    gap_seconds = models.FloatField(null=True, blank=True)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], name="anomalystate_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.subject}"


class Silence(models.Model):
    """A maintenance window: matching incidents are still recorded, but marked suppressed."""

    loader = models.ForeignKey(Loader, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(DetectionRule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    severity = models.CharField(max_length=10, choices=Severity.choices, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(help_text="End of the first window (and of each one, for a recurrence).")
    recurrence = models.CharField(
        max_length=300, blank=True, help_text="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=SU (times in the time zone)."
    )
    timezone = models.CharField(max_length=64, default="UTC")
    until = models.DateTimeField(null=True, blank=True, help_text="No window of a recurrence starts after this.")
    comment = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        return self.comment[:60] or f"silence #{self.pk}"


class BacktestJob(BackgroundJob):
    """A rule backtest too big to run while the user waits (``incidents.backtest_jobs``).

    Either a saved ``rule`` or a ``draft`` (the validated fields of a rule form or API body, never
    saved) with its listed loaders; the worker runs it and keeps ``result`` (``Backtest.as_dict``).
    ``rows_total`` is the size estimate that sent it here (subjects × evaluations). Only its
    requester and Admins see it; the hourly cleanup deletes it BACKTEST_JOB_KEEP_DAYS after it ended.
    """

    rule = models.ForeignKey(DetectionRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rule_name = models.CharField(max_length=200, help_text="The rule's (or the draft's) name when it was asked for.")
    draft = models.JSONField(null=True, blank=True, editable=False)
    scope_loader_ids = models.JSONField(null=True, blank=True, editable=False)
    days = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True, editable=False)

    class Meta(BackgroundJob.Meta):
        verbose_name = "rule backtest"

    def __str__(self) -> str:
        return f"backtest of {self.rule_name} over {self.days} days ({self.get_status_display().lower()})"
