"""Notification channels, routing rules and the delivery outbox.

A *channel* is a configured transport (email, a Slack bot, a Slack incoming
webhook, a generic webhook). A *notification rule* routes the incidents of one
severity (optionally narrowed to a team or a tag) to channels, recipients and a
Slack channel, with escalation tiers. Every message is a *delivery*: persisted
in the transaction that recorded the incident event, then sent by Celery with
retries — the outbox that loses nothing and sends nothing twice.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from etl_monitor.crypto import EncryptedTextField
from incidents.models import Incident, IncidentEvent
from loaders.models import Severity, Tag, Team
from signals_app.models import MetricType


class ChannelKind(models.TextChoices):
    EMAIL = "EMAIL", "Email (Django's EMAIL_* settings)"
    SLACK = "SLACK", "Slack bot (chat.postMessage / chat.update)"
    SLACK_WEBHOOK = "SLACK_WEBHOOK", "Slack incoming webhook"
    WEBHOOK = "WEBHOOK", "Generic webhook (signed JSON)"
    JIRA = "JIRA", "Jira (tickets, JIRA_* settings)"
    SMS = "SMS", "SMS to the people on call (Twilio, TWILIO_* settings)"
    VOICE = "VOICE", "Voice call to the people on call (Twilio)"


class Channel(models.Model):
    """A configured transport; notification rules name channels by ``name``."""

    name = models.SlugField(max_length=50, unique=True, help_text="How notification rules refer to it: email, slack…")
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    url = models.URLField(blank=True, help_text="Generic webhook: where to POST.")
    secret = EncryptedTextField(
        blank=True,
        help_text=(
            "Slack bot: a bot token (xoxb-…; empty = SLACK_BOT_TOKEN). Slack incoming webhook: its URL. "
            "Generic webhook: the HMAC signing secret (optional). Stored encrypted, never shown again."
        ),
    )
    healthy = models.BooleanField(default=True, editable=False)
    unhealthy_reason = models.TextField(blank=True, editable=False)
    unhealthy_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["secret", "healthy", "unhealthy_since", "last_success_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NotificationRule(models.Model):
    """Who hears about incidents of one severity, and who next when nobody acknowledges.

    Tier 0 is the rule's own channels, recipients, Slack channel and on-call schedules;
    ``escalation_tiers`` lists the next ones (each ``{"channels": [...], "recipients": [...],
    "slack_channel": "...", "oncall": [...]}``). A tier naming schedules tells whoever is on call
    in them; when nobody is, the next tier is told at once.
    An incident still unacknowledged ``escalation_timeout`` seconds after a tier was notified
    goes to the next tier; after the last one, the last tier is repeated ``escalation_repeat``
    times. A rule for a team or a tag wins over the plain severity rule.
    """

    severity = models.CharField(max_length=10, choices=Severity.choices)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Only this team's loaders."
    )
    tag = models.ForeignKey(
        Tag, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Only loaders with this tag."
    )
    channels = models.JSONField(default=list, blank=True, help_text='Channel names, e.g. ["email", "slack"].')
    recipients = models.JSONField(default=list, blank=True, help_text="Email addresses.")
    slack_channel = models.CharField(max_length=100, blank=True, help_text="e.g. #alerts-critical")
    oncall = models.JSONField(
        default=list,
        blank=True,
        help_text='On-call schedules (slugs), e.g. ["data-platform"]: whoever is on call is told (SMS, voice, email).',
    )
    escalation_timeout = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds without acknowledgement before the next tier; empty = no escalation."
    )
    escalation_tiers = models.JSONField(default=list, blank=True)
    escalation_repeat = models.PositiveSmallIntegerField(
        default=1, help_text="How many times the last tier is notified again after the tiers run out."
    )
    repeat_interval = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="While an incident keeps firing, a reminder at most this often (seconds); empty = never.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["severity", "team", "tag"]
        constraints = [
            models.UniqueConstraint(
                fields=["severity"], condition=Q(team__isnull=True, tag__isnull=True), name="notifrule_one_default"
            ),
            models.UniqueConstraint(
                fields=["severity", "team"], condition=Q(tag__isnull=True), name="notifrule_one_per_team"
            ),
            models.UniqueConstraint(
                fields=["severity", "tag"], condition=Q(team__isnull=True), name="notifrule_one_per_tag"
            ),
        ]

    def __str__(self) -> str:
        narrowed = f" · team {self.team}" if self.team_id else (f" · tag {self.tag}" if self.tag_id else "")
        return f"{self.severity}{narrowed}"

    def tiers(self) -> list[dict]:
        first = {
            "channels": self.channels,
            "recipients": self.recipients,
            "slack_channel": self.slack_channel,
            "oncall": self.oncall,
        }
        return [first, *(self.escalation_tiers or [])]


class IncidentNotification(models.Model):
    """Per incident: which rule routed it, how far it escalated, when the next step is due."""

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="notification")
    rule = models.ForeignKey(NotificationRule, null=True, on_delete=models.SET_NULL, related_name="+")
    tier = models.PositiveSmallIntegerField(default=0)
    escalations = models.PositiveSmallIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_reminder_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"incident {self.incident_id} tier {self.tier}"


class Purpose(models.TextChoices):
    OPENED = "OPENED", "Opened"
    REOPENED = "REOPENED", "Reopened"
    ESCALATED = "ESCALATED", "Escalated"
    REMINDER = "REMINDER", "Still firing"
    ACKNOWLEDGED = "ACKNOWLEDGED", "Acknowledged"
    RESOLVED = "RESOLVED", "Resolved"
    CLOSED = "CLOSED", "Closed"
    COMMENTED = "COMMENTED", "Comment"
    UPDATED = "UPDATED", "Updated (new links)"
    TEST = "TEST", "Test"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    SENDING = "SENDING", "Sending"
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed (will retry)"
    GAVE_UP = "GAVE_UP", "Gave up"


class Delivery(models.Model):
    """One message to one target over one channel, with its sending state (the outbox row)."""

    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(IncidentEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    target = models.CharField(max_length=500, help_text="Email address, Slack channel, or the webhook.")
    tier = models.PositiveSmallIntegerField(default=0)
    key = models.CharField(max_length=200, unique=True, help_text="Idempotency key: one delivery per key.")
    root = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="followups",
        help_text="The first message of this incident on this channel and target (Slack updates and threads).",
    )
    payload = models.JSONField(default=dict, help_text="What is sent (rendered when the delivery was created).")
    payload_digest = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    rate_limited_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Of the attempts, those the receiver refused as rate-limited (HTTP 429)."
    )
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(db_index=True)
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A SENDING delivery past this is recovered.")
    sent_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=200, blank=True, help_text="Slack message ts, email Message-ID…")
    page = models.ForeignKey(
        "Page",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        help_text="SMS and voice: the page (one SMS or call to one person) that carried this delivery.",
    )
    possible_duplicate = models.BooleanField(
        default=False, help_text="Sent again after an attempt whose outcome was unknown (the receiver may have both)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_status_next")]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} → {self.channel} {self.target}"

    @property
    def key_digest(self) -> str:
        """The idempotency key as receivers see it (Slack metadata, webhook header, Message-ID)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]


def _default_jira_severities() -> list[str]:
    return ["CRITICAL", "HIGH"]


def _default_jira_priorities() -> dict[str, str]:
    return {"CRITICAL": "Highest", "HIGH": "High", "MEDIUM": "Medium", "LOW": "Low"}


def _default_jira_labels() -> list[str]:
    return ["auto-detected", "etl-monitoring"]


class JiraSettings(models.Model):
    """How incidents become Jira tickets (one row). The connection itself (URL, user, token,
    project, webhook secret) comes from the JIRA_* environment variables."""

    severities = models.JSONField(default=_default_jira_severities, help_text="Severities that get a ticket.")
    issue_type = models.CharField(max_length=100, default="Incident")
    priorities = models.JSONField(default=_default_jira_priorities, help_text="Severity → Jira priority name.")
    labels = models.JSONField(default=_default_jira_labels, help_text="Labels on every ticket (plus the category).")
    correlation_field = models.CharField(
        max_length=100, blank=True, help_text="Custom field id holding the correlation id, e.g. customfield_10050."
    )
    done_transition = models.CharField(
        max_length=100, default="Done", help_text="Transition to done: its id, or its name (looked up per ticket)."
    )
    reopen_transition = models.CharField(max_length=100, default="Reopen", help_text="Transition back: id or name.")
    reopen_window_seconds = models.PositiveIntegerField(
        default=1800,
        help_text="An incident reopened within this time of its resolution reopens its ticket; later, a new "
        "ticket linked to the old one is created.",
    )
    refire_comment_seconds = models.PositiveIntegerField(
        default=3600, help_text="While an incident keeps firing, a comment on its ticket at most this often."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = verbose_name_plural = "Jira settings"

    def __str__(self) -> str:
        return "Jira settings"

    @classmethod
    def current(cls) -> JiraSettings:
        return cls.objects.get_or_create(pk=1)[0]


class JiraWebhookReceipt(models.Model):
    """A Jira webhook delivery already applied (Jira retries; a repeat changes nothing).

    A repeat is recognised by ``body_sha256``, the digest of the body Jira signed: the delivery
    identifier (``key``) is not signed, so a captured body sent again under a new identifier is
    still a repeat. Receipts are pruned only once the body's signed ``timestamp`` is outside the
    window the webhook accepts (``jira_receipts_prune``), so a pruned body is refused as stale."""

    key = models.CharField(max_length=200, unique=True)  # X-Atlassian-Webhook-Identifier, or the digest
    body_sha256 = models.CharField(max_length=64, unique=True, null=True, blank=True)  # null: before 0012
    event_at = models.DateTimeField(null=True, blank=True)  # the event's signed ``timestamp``
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    event = models.CharField(max_length=100)
    issue_key = models.CharField(max_length=50)
    outcome = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"{self.event} {self.issue_key}"


class PageMethod(models.TextChoices):
    SMS = "SMS", "SMS"
    VOICE = "VOICE", "Voice call"


class Page(models.Model):
    """One SMS or call to one person's phone: the unit the per-person rate limit counts.

    A page covers one or more deliveries (``Delivery.page``): in a storm the SMS deliveries to
    one phone within PAGE_MIN_INTERVAL_SECONDS are batched into one page. ``code`` is what the
    person replies (``ACK 4821``); ``incidents`` what that reply acknowledges. ``status`` and
    ``error_code`` follow the provider's status callbacks (Twilio's MessageStatus / CallStatus)."""

    method = models.CharField(max_length=10, choices=PageMethod.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    phone = models.CharField(max_length=20)
    code = models.CharField(max_length=8, blank=True)
    incidents = models.ManyToManyField(Incident, blank=True, related_name="pages")
    body = models.TextField(blank=True, help_text="The SMS text, or what the call says.")
    provider = models.CharField(max_length=20, blank=True, help_text="twilio, gateway…")
    external_id = models.CharField(max_length=64, blank=True, db_index=True, help_text="Twilio's SM… / CA… sid.")
    status = models.CharField(max_length=20, blank=True, help_text="queued, sent, delivered, undelivered, failed…")
    error_code = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True, help_text="A reply or key press acted on it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["phone", "-created_at"], name="page_phone_recent")]

    def __str__(self) -> str:
        return f"{self.get_method_display()} to {self.phone} ({self.status or 'pending'})"


class PageWindow(models.Model):
    """When the next page by ``method`` to ``phone`` may go: the per-person rate limit
    (PAGE_MIN_INTERVAL_SECONDS). One row per method and phone, taken by a conditional UPDATE
    (``opens_at <= now``), so two workers never both page a phone in one window. ``holder`` is
    the first delivery of the page that took it: when that page failed, its retry takes the window
    again rather than wait for it to open."""

    method = models.CharField(max_length=10, choices=PageMethod.choices)
    phone = models.CharField(max_length=20)
    opens_at = models.DateTimeField()
    holder = models.BigIntegerField(null=True, blank=True, help_text="The delivery whose page took the window.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["method", "phone"], name="pagewindow_once_per_phone")]

    def __str__(self) -> str:
        return f"{self.get_method_display()} to {self.phone} from {self.opens_at:%Y-%m-%d %H:%M:%S}"


class TwilioWebhookReceipt(models.Model):
    """A signed Twilio webhook request already handled: the same signed request again (a replay,
    or Twilio's retry) is recognised by ``digest`` (of the signature and the signed URL and
    parameters) and changes nothing."""

    digest = models.CharField(max_length=64, unique=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=20, help_text="sms, voice, gather, status")
    sid = models.CharField(max_length=64, blank=True, help_text="MessageSid / CallSid.")
    outcome = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.sid}"


def validate_service_url(value: str) -> None:
    """An http(s) URL of a server, where a host may be a bare service name (``http://prometheus:9090``,
    as in Kubernetes and Compose), which Django's URLValidator refuses."""
    import re
    from urllib.parse import urlsplit

    from django.core.exceptions import ValidationError

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — reading it raises ValueError when it is not a number in range
    except ValueError as exc:
        raise ValidationError(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Enter an http:// or https:// URL, e.g. http://prometheus:9090.")
    if parts.username or parts.password:
        # The URL is shown to every role; a secret is stored encrypted and shown to nobody.
        raise ValidationError(
            "Put credentials in the authentication and secret fields, not in the URL (the URL is shown to every role)."
        )
    host = parts.hostname or ""
    label = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
    is_name = re.fullmatch(rf"{label}(\.{label})*", host)
    is_ip = re.fullmatch(r"[0-9a-fA-F:.]+", host)  # v4, or v6 (given in brackets)
    if not (is_name or is_ip):
        raise ValidationError(f"Not a valid host name: {host or '(none)'}.")


class SourceKind(models.TextChoices):
    PROMETHEUS = "PROMETHEUS", "Prometheus"
    ELASTICSEARCH = "ELASTICSEARCH", "Elasticsearch"


class SourceAuth(models.TextChoices):
    NONE = "NONE", "None"
    BASIC = "BASIC", "Basic (username + password)"
    BEARER = "BEARER", "Bearer token"
    API_KEY = "API_KEY", "API key (Elasticsearch)"


class DataSource(models.Model):
    """An external system detection rules query (Prometheus, Elasticsearch). The server fetches
    its URL, so only admins may create or change one."""

    name = models.SlugField(max_length=50, unique=True, help_text="How rules refer to it (params.source).")
    kind = models.CharField(max_length=20, choices=SourceKind.choices)
    url = models.CharField(
        "URL",
        max_length=500,
        validators=[validate_service_url],
        help_text="e.g. http://prometheus:9090 or https://es.example.com:9200",
    )
    auth = models.CharField(max_length=10, choices=SourceAuth.choices, default=SourceAuth.NONE)
    username = models.CharField(max_length=200, blank=True, help_text="Basic auth only.")
    secret = EncryptedTextField(
        blank=True, help_text="Password, bearer token or API key. Stored encrypted, never shown again."
    )
    verify_tls = models.BooleanField(default=True)
    timeout_seconds = models.FloatField(default=5.0)
    enabled = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["secret", "last_success_at", "last_error", "last_error_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Capture(models.Model):
    """A statistics capture: every ``CAPTURE_BUCKET_SECONDS`` (5 minutes) the query runs against
    its data source and each value found is stored as a signal of ``loader`` — one per key (a
    service, a pod), with ``metric_type`` and the source as ``metric_source`` — so one rule
    language, one history and one dashboard cover ETL runs and the systems around them.

    For Prometheus, ``query`` is PromQL (an instant vector, evaluated at the end of the bucket)
    and ``key_label`` the label naming each series. For Elasticsearch, ``query`` filters the log
    lines (Lucene syntax, e.g. ``level:ERROR``) and the value is the count per value of the field
    ``key_label`` within the bucket."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    loader = models.ForeignKey(
        "loaders.Loader",
        on_delete=models.PROTECT,
        related_name="captures",
        help_text="The loader the signals belong to.",
    )
    source = models.SlugField(
        max_length=50, default="prometheus", help_text="The data source's name (admin → Data sources)."
    )
    source_kind = models.CharField(max_length=20, choices=SourceKind.choices, default=SourceKind.PROMETHEUS)
    query = models.TextField(
        blank=True,
        help_text="PromQL (Prometheus), or a Lucene filter such as level:ERROR "
        "(Elasticsearch; empty counts every line).",
    )
    index = models.CharField(
        max_length=200, blank=True, help_text="Elasticsearch only: the index or pattern (default ELASTICSEARCH_INDEX)."
    )
    time_field = models.CharField(max_length=100, default="@timestamp", help_text="Elasticsearch only.")
    key_label = models.CharField(
        max_length=200,
        help_text="The label (Prometheus) or field (Elasticsearch) whose value is the signal key, e.g. service. "
        "Several labels, comma-separated, are joined with '/'.",
    )
    key_prefix = models.CharField(
        max_length=50, blank=True, help_text="Put before each key, e.g. 'memory:' when a loader holds several metrics."
    )
    metric_type = models.CharField(max_length=40, choices=MetricType.choices)
    enabled = models.BooleanField(default=True)
    system = models.BooleanField(default=False, editable=False, help_text="One of the roadmap's captures (seeded).")
    last_bucket_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_stored = models.PositiveIntegerField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["last_bucket_at", "last_run_at", "last_stored", "last_error"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def key_labels(self) -> list[str]:
        return [label.strip() for label in self.key_label.split(",") if label.strip()]

    def clean(self) -> None:
        """What a capture needs to run, each problem on its field (the admin and configuration as
        code both call this)."""
        import re

        from django.core.exceptions import ValidationError

        errors: dict[str, str] = {}
        if not self.query.strip() and self.source_kind == SourceKind.PROMETHEUS:
            errors["query"] = "A Prometheus capture needs a PromQL query."
        labels = self.key_labels
        if not labels:
            errors["key_label"] = "Name the label (or field) whose value is the signal key, e.g. service."
        elif self.source_kind == SourceKind.PROMETHEUS:
            bad = [label for label in labels if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label)]
            if bad:
                errors["key_label"] = f"Not a Prometheus label name: {', '.join(bad)}."
        elif len(labels) > 1:
            errors["key_label"] = "An Elasticsearch capture counts per one field."
        source = DataSource.objects.filter(name=self.source).first()
        # Without a saved source, the names "prometheus" and "elasticsearch" are the environment's.
        kind = (
            source.kind
            if source is not None
            else {"prometheus": "PROMETHEUS", "elasticsearch": "ELASTICSEARCH"}.get(self.source)
        )
        if kind is not None and kind != self.source_kind:
            errors["source"] = (
                f"Data source {self.source!r} is {SourceKind(kind).label}, not {self.get_source_kind_display()}."
            )
        if errors:
            raise ValidationError(errors)
