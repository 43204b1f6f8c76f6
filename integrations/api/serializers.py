"""Shapes of the integrations API. Writes go through integrations.notifications.rules,
integrations.notifications.channels and integrations.sources.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from etl_monitor.api import RejectUnknownFieldsMixin
from integrations.models import Capture, Channel, DataSource, Delivery, DeliveryStatus, NotificationRule
from integrations.notifications.channels import channel_configured
from integrations.notifications.rules import RULE_FIELDS
from integrations.selectors import delivery_payload_visible
from integrations.sources.services import CAPTURE_FIELDS, SOURCE_FIELDS
from loaders.models import Loader, Tag, Team


class TierSerializer(serializers.Serializer):
    """One escalation tier (documentation only: the service validates tiers and names bad keys)."""

    channels = serializers.ListField(child=serializers.CharField())
    recipients = serializers.ListField(child=serializers.CharField(), required=False)
    slack_channel = serializers.CharField(required=False, allow_blank=True)
    oncall = serializers.ListField(child=serializers.SlugField(), required=False)


@extend_schema_field(TierSerializer(many=True))
class TiersField(serializers.JSONField):
    """Passed through as given, so an unknown key reaches the service and is named, not dropped."""


class NotificationRuleSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True)
    tag = serializers.SlugRelatedField(slug_field="name", queryset=Tag.objects.all(), required=False, allow_null=True)
    channels = serializers.ListField(child=serializers.CharField(), required=False)
    recipients = serializers.ListField(child=serializers.CharField(), required=False)
    oncall = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="On-call schedules (slugs) whose people are told."
    )
    escalation_tiers = TiersField(required=False)

    class Meta:
        model = NotificationRule
        fields = ("id", *RULE_FIELDS, "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")
        validators: list = []  # one rule per severity / team / tag: answered by the service, clearly


CHANNEL_STATE = (
    "has_secret",
    "healthy",
    "unhealthy_reason",
    "unhealthy_since",
    "last_success_at",
    "created_at",
    "updated_at",
)


class WriteOnlySecretMixin(serializers.Serializer):
    """A ``secret`` that is written, never read: responses say only ``has_secret``. Omitted or
    empty, the stored secret is kept; ``null`` clears it."""

    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        allow_null=True,
        style={"input_type": "password"},
        help_text=(
            'Write-only. A value replaces the stored secret; omit it or send "" to keep the stored one; '
            "send null to clear it (has_secret becomes false)."
        ),
    )
    has_secret = serializers.SerializerMethodField()

    def get_has_secret(self, obj: Any) -> bool:
        return bool(obj.secret)


class ChannelSerializer(RejectUnknownFieldsMixin, WriteOnlySecretMixin, serializers.ModelSerializer):
    cannot_send = serializers.SerializerMethodField(
        help_text="Why the channel cannot send (disabled, no secret where its kind needs one…); null when it can."
    )

    class Meta:
        model = Channel
        fields = ("id", "name", "kind", "enabled", "url", "secret", *CHANNEL_STATE, "cannot_send")
        read_only_fields = ("id", *CHANNEL_STATE)
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service

    def get_cannot_send(self, obj: Channel) -> str | None:
        return channel_configured(obj)


class ChannelTestSerializer(serializers.Serializer):
    target = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text=(
            "Email address or Slack channel. Default: your address for email; for the Slack bot, the Slack "
            "channel of the least severe rule that routes to it."
        ),
    )


class DeliverySerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="name", read_only=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = (
            "id",
            "incident",
            "channel",
            "purpose",
            "target",
            "tier",
            "status",
            "attempts",
            "last_error",
            "next_attempt_at",
            "sent_at",
            "external_id",
            "possible_duplicate",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    payload = serializers.SerializerMethodField(
        help_text="The message as sent; a loader field protected from your role since then reads ••••••."
    )

    class Meta(DeliverySerializer.Meta):
        fields = (*DeliverySerializer.Meta.fields, "root", "payload")
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_payload(self, obj: Delivery) -> Any:
        request = self.context.get("request")
        # No request known means the strictest policy (no exemption), never none.
        return delivery_payload_visible(user=getattr(request, "user", None), delivery=obj)


SOURCE_STATE = ("has_secret", "last_success_at", "last_error", "last_error_at", "created_at", "updated_at")


class DataSourceSerializer(RejectUnknownFieldsMixin, WriteOnlySecretMixin, serializers.ModelSerializer):
    """``secret``: the password, bearer token or API key of ``auth``."""

    class Meta:
        model = DataSource
        fields = ("id", *SOURCE_FIELDS, "secret", *SOURCE_STATE)
        read_only_fields = ("id", *SOURCE_STATE)
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service


class SourceCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="Whether the source answered as its kind should.")
    detail = serializers.CharField(help_text="What it said (version, documents), or why it failed.")


class LoaderCodeField(serializers.CharField):
    """A loader by its code: passed to the service as given, so an unknown code is named there."""

    def to_representation(self, value: Loader) -> str:
        return value.loader_code


CAPTURE_STATE = ("system", "last_run_at", "last_bucket_at", "last_stored", "last_error", "created_at", "updated_at")


class CaptureSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    loader = LoaderCodeField(help_text="The code of the loader the signals belong to.")

    class Meta:
        model = Capture
        fields = ("id", *CAPTURE_FIELDS, *CAPTURE_STATE)
        read_only_fields = ("id", *CAPTURE_STATE)
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service


class CaptureRunSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["stored", "skipped", "failed"])
    bucket = serializers.DateTimeField(help_text="The end of the bucket captured.")
    found = serializers.IntegerField(help_text="Values the source answered.")
    stored = serializers.IntegerField(help_text="Signals newly stored (0 when the bucket was captured before).")
    notes = serializers.ListField(child=serializers.CharField())
    error = serializers.CharField(help_text="Why the capture was skipped or failed.")
    summary = serializers.CharField(help_text="The result in one line, as the admin shows it.")
