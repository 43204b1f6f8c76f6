"""Shapes of the incidents API (rules, silences, incidents).

Writes go through incidents.services (rules) and incidents.silences.
"""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from etl_monitor.api import RejectUnknownFieldsMixin
from incidents.models import BacktestJob, DetectionRule, Incident, IncidentEvent, Silence
from incidents.selectors import LINKS_MAX, incident_triggering_runs
from incidents.services import RULE_FIELDS
from incidents.silences import SILENCE_FIELDS
from loaders.models import Loader, Tag, Team


class RuleSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    scope_loaders = serializers.SlugRelatedField(
        slug_field="loader_code", many=True, queryset=Loader.objects.all(), required=False
    )
    scope_tag = serializers.SlugRelatedField(
        slug_field="name", queryset=Tag.objects.all(), required=False, allow_null=True
    )
    scope_owner = serializers.SlugRelatedField(
        slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = DetectionRule
        fields = ("id", *RULE_FIELDS, "last_evaluated_at", "next_due_at", "last_error")
        read_only_fields = ("id", "last_evaluated_at", "next_due_at", "last_error")
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service with a clear message


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = IncidentEvent
        fields = ("id", "kind", "at", "actor", "message", "data")
        read_only_fields = fields


class IncidentSerializer(serializers.ModelSerializer):
    loader_code = serializers.CharField(source="loader.loader_code", read_only=True, allow_null=True, default=None)
    rule = serializers.SlugRelatedField(slug_field="name", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Incident
        fields = (
            "id",
            "title",
            "description",
            "severity",
            "category",
            "status",
            "rule",
            "loader_code",
            "subject",
            "fingerprint",
            "occurrences",
            "first_seen",
            "last_seen",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "closed_at",
            "metrics",
            "suggestion",
            "impact",
            "correlation_id",
            "suppressed",
            "flapping",
            "external_key",
            "external_url",
        )
        read_only_fields = fields


class IncidentDetailSerializer(IncidentSerializer):
    events = EventSerializer(many=True, read_only=True)
    triggering_runs = serializers.SerializerMethodField(
        help_text="The runs that fired the incident (newest first): their ids and API URLs."
    )

    class Meta(IncidentSerializer.Meta):
        fields = (*IncidentSerializer.Meta.fields, "events", "triggering_runs")
        read_only_fields = fields

    def get_triggering_runs(self, incident: Incident) -> list[dict[str, str]]:
        return [
            {"run_id": str(run.run_id), "url": reverse("v1:run-detail", args=[run.run_id])}
            for run in incident_triggering_runs(incident, limit=LINKS_MAX)
        ]


class IncidentActionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class CommentSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=5000)


class SilenceSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    loader = serializers.SlugRelatedField(
        slug_field="loader_code", queryset=Loader.objects.all(), required=False, allow_null=True
    )
    tag = serializers.SlugRelatedField(slug_field="name", queryset=Tag.objects.all(), required=False, allow_null=True)
    owner = serializers.SlugRelatedField(
        slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True
    )
    rule = serializers.SlugRelatedField(
        slug_field="name", queryset=DetectionRule.objects.all(), required=False, allow_null=True
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Silence
        fields = ("id", *SILENCE_FIELDS, "created_by", "created_at")
        read_only_fields = ("id", "created_by", "created_at")


class BacktestRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    days = serializers.IntegerField(default=30, help_text="How many days back, 1 to 90.")


class RuleDraftBacktestSerializer(RuleSerializer):
    """A rule's fields as for creating one (validated, never saved), and the days to backtest."""

    days = serializers.IntegerField(default=30, write_only=True, help_text="How many days back, 1 to 90.")

    class Meta(RuleSerializer.Meta):
        fields = (*RuleSerializer.Meta.fields, "days")
        extra_kwargs = {"name": {"validators": [], "required": False}}


class WouldBeIncidentSerializer(serializers.Serializer):
    subject = serializers.CharField()
    loader_id = serializers.IntegerField(allow_null=True)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(allow_null=True, help_text="Null: still open at the end of the backtest.")
    duration_seconds = serializers.FloatField(allow_null=True)
    peak = serializers.FloatField(allow_null=True, help_text="The most extreme value measured while it was open.")
    peak_score = serializers.FloatField(allow_null=True, help_text="Anomaly rules: the highest score while open.")
    peak_at = serializers.DateTimeField(allow_null=True)
    occurrences = serializers.IntegerField()
    reopened = serializers.IntegerField()
    flapping = serializers.BooleanField()


class BacktestSerializer(serializers.Serializer):
    """What a rule would have opened (``incidents.backtest.Backtest.as_dict``)."""

    rule = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step_seconds = serializers.IntegerField(help_text="The time between two evaluations.")
    evaluations = serializers.IntegerField()
    subjects_measured = serializers.IntegerField()
    incidents = WouldBeIncidentSerializer(many=True)
    per_subject = serializers.DictField(child=serializers.IntegerField())
    errors = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(child=serializers.CharField())
    elapsed_seconds = serializers.FloatField()


class BacktestQueuedSerializer(serializers.Serializer):
    """A backtest too big to wait for (BACKTEST_INLINE_MAX): queued as a job; poll ``url``."""

    id = serializers.UUIDField()
    status = serializers.CharField(help_text="QUEUED (or FAILED at once, when the queue was unavailable).")
    url = serializers.URLField(help_text="GET it for the job's status and, once DONE, its result.")


class BacktestJobSerializer(serializers.Serializer):
    """A backtest run by the worker: its status, and once DONE its result."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["QUEUED", "RUNNING", "DONE", "FAILED"])
    rule = serializers.IntegerField(source="rule_id", allow_null=True, help_text="Null for a draft's backtest.")
    rule_name = serializers.CharField()
    draft = serializers.SerializerMethodField(help_text="True: a draft's settings, not the saved rule.")
    days = serializers.IntegerField()
    size = serializers.IntegerField(
        source="rows_total", help_text="The estimate that queued it: (loaders in scope + 40) × evaluations."
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(help_text="Why it FAILED; empty otherwise.")
    result = BacktestSerializer(allow_null=True, help_text="The backtest once DONE; null before, and when FAILED.")

    def get_draft(self, job: BacktestJob) -> bool:
        return job.draft is not None
