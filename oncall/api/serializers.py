"""Shapes of the on-call API: schedules with their layers, who is on call, overrides.
Writes go through oncall.services."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from etl_monitor.api import RejectUnknownFieldsMixin
from oncall.models import Override, Rotation, Schedule
from oncall.services import OVERRIDE_FIELDS

User = get_user_model()


class RotationSerializer(serializers.ModelSerializer):
    members = serializers.SerializerMethodField(help_text="Usernames in turn order: the first takes the first shift.")

    class Meta:
        model = Rotation
        fields = (
            "id",
            "name",
            "layer",
            "handoff",
            "handoff_time",
            "start_date",
            "restrict_start",
            "restrict_end",
            "members",
        )
        read_only_fields = fields

    def get_members(self, rotation: Rotation) -> list[str]:
        return [member.user.get_username() for member in rotation.members.all()]


class ScheduleSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Schedule
        fields = ("id", "name", "slug", "timezone", "team", "description", "updated_at")
        read_only_fields = fields


class ScheduleDetailSerializer(ScheduleSerializer):
    rotations = RotationSerializer(many=True, read_only=True)

    class Meta(ScheduleSerializer.Meta):
        fields = (*ScheduleSerializer.Meta.fields, "rotations")
        read_only_fields = fields


class ShiftSerializer(serializers.Serializer):
    user = serializers.CharField(source="user.username")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=["rotation", "override"])
    rotation = serializers.CharField(allow_blank=True)
    layer = serializers.IntegerField(allow_null=True)
    override = serializers.IntegerField(source="override_id", allow_null=True)


class OnCallSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    oncall = serializers.ListField(child=serializers.CharField(), help_text="Usernames on call at ``at``.")
    shifts = ShiftSerializer(many=True)


class OnCallQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=60, default=14)


class OverrideSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all())
    covers = serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.all(), required=False, allow_null=True
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Override
        fields = ("id", *OVERRIDE_FIELDS, "created_by", "created_at")
        read_only_fields = ("id", "created_by", "created_at")
