"""Shapes of the notifications API. Writes go through integrations.routing and integrations.notify."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from incidents.api.serializers import RejectUnknownFieldsMixin
from integrations.models import Channel, Delivery, DeliveryStatus, NotificationRule
from integrations.routing import RULE_FIELDS
from loaders.models import Tag, Team


class TierSerializer(serializers.Serializer):
    """One escalation tier (documentation only: the service validates tiers and names bad keys)."""

    channels = serializers.ListField(child=serializers.CharField())
    recipients = serializers.ListField(child=serializers.CharField(), required=False)
    slack_channel = serializers.CharField(required=False, allow_blank=True)


@extend_schema_field(TierSerializer(many=True))
class TiersField(serializers.JSONField):
    """Passed through as given, so an unknown key reaches the service and is named, not dropped."""


class NotificationRuleSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True)
    tag = serializers.SlugRelatedField(slug_field="name", queryset=Tag.objects.all(), required=False, allow_null=True)
    channels = serializers.ListField(child=serializers.CharField(), required=False)
    recipients = serializers.ListField(child=serializers.CharField(), required=False)
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


class ChannelSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        style={"input_type": "password"},
        help_text="Write-only. Omit it or send it empty to keep the stored secret.",
    )
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = ("id", "name", "kind", "enabled", "url", "secret", *CHANNEL_STATE)
        read_only_fields = ("id", *CHANNEL_STATE)
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service

    def get_has_secret(self, obj: Channel) -> bool:
        return bool(obj.secret)


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
    class Meta(DeliverySerializer.Meta):
        fields = (*DeliverySerializer.Meta.fields, "root", "payload")
        read_only_fields = fields
