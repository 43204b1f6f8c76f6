"""Shapes of the ingest API. Input is validated by signals_app.services (fast path);
these serializers describe it for the OpenAPI schema and format the output."""

from __future__ import annotations

from rest_framework import serializers

from signals_app.models import IngestToken, MetricSource, MetricType, Run, RunStatus, Signal, ValidationStatus


class SignalInSerializer(serializers.Serializer):
    loader_code = serializers.CharField(max_length=64)
    signal_key = serializers.CharField(max_length=200)
    signal_value = serializers.JSONField(required=False, help_text="Number, string (≤ 500 chars), boolean or null.")
    validation_status = serializers.ChoiceField(choices=ValidationStatus.choices)
    metric_type = serializers.ChoiceField(choices=MetricType.choices, required=False, default=MetricType.CUSTOM)
    metric_source = serializers.ChoiceField(choices=MetricSource.choices, required=False, default=MetricSource.ETL)
    captured_at = serializers.DateTimeField(required=False, help_text="ISO 8601 with a time zone; default now.")
    correlation_id = serializers.CharField(max_length=100, required=False)
    run_id = serializers.UUIDField(required=False)
    attributes = serializers.DictField(required=False, help_text="Up to 50 keys, about 4 KB.")
    idempotency_key = serializers.CharField(
        max_length=200, required=False, help_text="Retries with the same key store the signal once."
    )


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Signals of the request now stored (same answer on a retry).")


class SignalSerializer(serializers.ModelSerializer):
    loader_code = serializers.CharField(source="loader.loader_code", read_only=True)
    run_id = serializers.UUIDField(source="run.run_id", read_only=True, allow_null=True)

    class Meta:
        model = Signal
        fields = (
            "id",
            "loader_code",
            "signal_key",
            "signal_value",
            "value_number",
            "validation_status",
            "metric_type",
            "metric_source",
            "captured_at",
            "received_at",
            "correlation_id",
            "run_id",
            "attributes",
            "idempotency_key",
            "loader_paused",
            "no_active_version",
        )
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    loader_code = serializers.CharField(max_length=64)
    run_id = serializers.UUIDField(required=False, help_text="Your own id for the run; generated if absent.")
    started_at = serializers.DateTimeField(required=False)
    correlation_id = serializers.CharField(max_length=100, required=False)


class RunFinishSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[s for s in RunStatus.choices if s[0] != RunStatus.RUNNING])
    finished_at = serializers.DateTimeField(required=False)
    rows_read = serializers.IntegerField(required=False, min_value=0)
    rows_written = serializers.IntegerField(required=False, min_value=0)
    rows_rejected = serializers.IntegerField(required=False, min_value=0)
    error_text = serializers.CharField(required=False, help_text="Kept up to 4,000 characters.")
    log_excerpt = serializers.CharField(required=False, help_text="Kept up to 10,000 characters.")
    exit_status = serializers.IntegerField(required=False, min_value=0, max_value=255)
    correlation_id = serializers.CharField(max_length=100, required=False)


class RunSerializer(serializers.ModelSerializer):
    loader_code = serializers.CharField(source="loader.loader_code", read_only=True)
    loader_version = serializers.IntegerField(source="loader_version.number", read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = (
            "run_id",
            "loader_code",
            "loader_version",
            "status",
            "started_at",
            "finished_at",
            "duration_seconds",
            "rows_read",
            "rows_written",
            "rows_rejected",
            "error_text",
            "log_excerpt",
            "exit_status",
            "correlation_id",
            "source",
            "loader_paused",
            "no_active_version",
        )
        read_only_fields = fields


class IngestTokenSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = IngestToken
        fields = (
            "id",
            "kind",
            "name",
            "prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
            "revoked_by",
        )
        read_only_fields = fields


class IngestTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=IngestToken.Kind.choices, default=IngestToken.Kind.API)


class IngestTokenCreatedSerializer(IngestTokenSerializer):
    token = serializers.CharField(help_text="The plaintext token: shown in this answer only, store it now.")

    class Meta(IngestTokenSerializer.Meta):
        fields = (*IngestTokenSerializer.Meta.fields, "token")
        read_only_fields = fields


class WhoAmISerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="ingest_token or user")
    name = serializers.CharField()
    loader_code = serializers.CharField(required=False)
    roles = serializers.ListField(child=serializers.CharField(), required=False)
