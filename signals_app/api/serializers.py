"""Shapes of the ingest API.

The run contract (``RunStartSerializer``, ``RunFinishSerializer``) is what ``run_start`` and
``run_finish`` validate with, and what the OpenAPI schema shows: one source of truth. Its fields
check input with the rules of signals_app.validators, the same functions — and words — as the
signal fast path. Signals themselves are validated by that fast path (a batch of 5,000 cannot
afford a serializer per item); ``SignalInSerializer`` describes them for the schema only.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import empty

from etl_monitor.errors import InvalidInput, fields_known
from loaders.models import Loader
from loaders.validators import LOADER_CODE_RE
from signals_app import validators
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


# --- the run contract ------------------------------------------------------------------------


class _RaiseRefusal:
    """The run contract's sink for signals_app.validators: a refusal is the field's error at once."""

    def add(self, index: int | None, field: str, message: str) -> None:
        raise serializers.ValidationError(message)


_RAISE = _RaiseRefusal()


class _Checked:
    """A field checked by a rule of signals_app.validators instead of DRF's own checks (which
    turn 5 into "5", trim spaces and word their messages differently); the DRF field class it
    is mixed into still describes the field in the OpenAPI schema. Absent and null are both
    None to the rule, so every field is in ``validated_data``."""

    def run_validation(self, data: Any = empty) -> Any:
        return self.check(None if data is empty else data)

    def check(self, value: Any) -> Any:
        raise NotImplementedError


class CheckedText(_Checked, serializers.CharField):
    def check(self, value: Any) -> str:
        return validators.text(value, self.field_name, self.max_length, _RAISE, None, self.required)


class LoaderCode(CheckedText):
    """A loader's code, validated into the Loader itself."""

    def check(self, value: Any) -> Loader:
        code = super().check(value)
        loader = Loader.objects.filter(loader_code=code).first() if LOADER_CODE_RE.match(code) else None
        if loader is None:
            raise serializers.ValidationError(f"Unknown loader {code!r}.")
        return loader


class FreeText(_Checked, serializers.CharField):
    """Text from the job that is never refused, only bounded (``validators.free_text``)."""

    def __init__(self, *, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit

    def check(self, value: Any) -> str:
        return validators.free_text(value, self.limit)


class CheckedTimestamp(_Checked, serializers.DateTimeField):
    def check(self, value: Any) -> Any:
        return validators.timestamp(value, self.field_name, _RAISE, None, timezone.now())


class CheckedUUID(_Checked, serializers.UUIDField):
    def check(self, value: Any) -> Any:
        return validators.uuid_value(value, self.field_name, _RAISE, None)


class CheckedChoice(_Checked, serializers.ChoiceField):
    def check(self, value: Any) -> str:
        return validators.choice(value, self.field_name, tuple(self.choices), None, _RAISE, None)


class WholeNumber(_Checked, serializers.IntegerField):
    """An integer from 0 to ``max_value``, or to the largest a bigint column holds."""

    def check(self, value: Any) -> int | None:
        maximum = validators.MAX_COUNT if self.max_value is None else self.max_value
        return validators.whole_number(value, self.field_name, maximum, _RAISE, None)


# A field the contract does not have is refused together with the other fields' errors
# (``RejectUnknownFieldsMixin`` names unknown fields only once every known one is valid).
# A comment, not a docstring: the schema would show it as both serializers' description.
class _RunContract(serializers.Serializer):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        try:
            fields_known(data, set(self.fields))
        except InvalidInput as refused:
            errors.update(refused.errors)
        try:
            valid = super().to_internal_value(data)
        except serializers.ValidationError as invalid:
            errors.update(invalid.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return valid


class RunStartSerializer(_RunContract):
    loader_code = LoaderCode(max_length=64, source="loader")
    run_id = CheckedUUID(required=False, help_text="Your own id for the run; generated if absent.")
    started_at = CheckedTimestamp(required=False)
    correlation_id = CheckedText(max_length=100, required=False)


class RunFinishSerializer(_RunContract):
    status = CheckedChoice(choices=[s for s in RunStatus.choices if s[0] != RunStatus.RUNNING])
    finished_at = CheckedTimestamp(required=False)
    rows_read = WholeNumber(required=False, min_value=0)
    rows_written = WholeNumber(required=False, min_value=0)
    rows_rejected = WholeNumber(required=False, min_value=0)
    correlation_id = CheckedText(max_length=100, required=False)
    exit_status = WholeNumber(required=False, min_value=0, max_value=255)
    error_text = FreeText(limit=validators.ERROR_TEXT_MAX, required=False, help_text="Kept up to 4,000 characters.")
    log_excerpt = FreeText(limit=validators.LOG_EXCERPT_MAX, required=False, help_text="Kept up to 10,000 characters.")


class RunSerializer(serializers.ModelSerializer):
    loader_code = serializers.CharField(source="loader.loader_code", read_only=True)
    loader_version = serializers.IntegerField(source="loader_version.number", read_only=True, allow_null=True)
    url = serializers.SerializerMethodField(help_text="This run in the API.")
    incidents_url = serializers.SerializerMethodField(help_text="The incidents this run fired, in the incidents API.")

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
            "url",
            "incidents_url",
        )
        read_only_fields = fields

    def get_url(self, run: Run) -> str:
        return reverse("v1:run-detail", args=[run.run_id])

    def get_incidents_url(self, run: Run) -> str:
        # A URL, not a list: the incidents app sits above this one (it answers ``?run=``).
        return f"{reverse('v1:incident-list')}?run={run.run_id}"


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
