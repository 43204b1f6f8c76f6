"""Loader API shapes. Input is flat (identity and contract fields side by side, as in
a spreadsheet row); output nests the ACTIVE and the open version. Secrets are
write-only: reads say only whether one is set."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers

from etl_monitor.api import RejectUnknownFieldsMixin
from etl_monitor.protection import policy_for
from loaders.models import ImportJob, Loader, LoaderVersion, Tag, Team
from loaders.services import CONTRACT_FIELDS, LOADER_FIELDS


def _max_length(model: type[models.Model], field: str) -> int | None:
    return model._meta.get_field(field).max_length  # the model's limit, never a copy of it


class ProtectedFieldsMixin:
    """Applies field protection (etl_monitor.protection) to every representation."""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        policy = policy_for(getattr(request, "user", None), self.Meta.model)
        redacted = policy.redact(data)
        if "connection_password_set" in data and "connection_password" in policy.hidden:
            redacted.pop("connection_password_set", None)
        return redacted


class VersionSerializer(ProtectedFieldsMixin, serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    submitted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    based_on = serializers.SlugRelatedField(slug_field="number", read_only=True)
    connection_password_set = serializers.SerializerMethodField()

    class Meta:
        model = LoaderVersion
        fields = (
            "number",
            "state",
            *[f for f in CONTRACT_FIELDS if f not in LoaderVersion.SECRET_FIELDS],
            "connection_password_set",
            "based_on",
            "created_by",
            "created_at",
            "updated_at",
            "submitted_by",
            "submitted_at",
            "submitted_comment",
            "decided_by",
            "decided_at",
            "decision_comment",
        )
        read_only_fields = fields

    def get_connection_password_set(self, obj: LoaderVersion) -> bool:
        return bool(obj.connection_password)


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = LoaderVersion
        fields = ("number", "state", "created_at", "submitted_at", "decided_at")
        read_only_fields = fields


class LoaderListSerializer(ProtectedFieldsMixin, serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    code_locked = serializers.BooleanField(read_only=True)
    has_pending_approval = serializers.BooleanField(read_only=True)
    active_version = VersionSummarySerializer(read_only=True, allow_null=True)
    open_version = VersionSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Loader
        fields = (
            "loader_code",
            "name",
            "owner",
            "tags",
            "is_paused",
            "code_locked",
            "has_pending_approval",
            "active_version",
            "open_version",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class LoaderDetailSerializer(LoaderListSerializer):
    active_version = VersionSerializer(read_only=True, allow_null=True)
    open_version = VersionSerializer(
        read_only=True, allow_null=True, help_text="The DRAFT or PENDING_APPROVAL version, if any."
    )


class LoaderWriteSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """Flat input. Create needs loader_code, name and owner; PATCH takes any subset.

    Identity fields apply at once; contract fields go to the loader's draft
    (started from the ACTIVE version when none is open) and need approval.
    """

    loader_code = serializers.CharField(max_length=_max_length(Loader, "loader_code"))
    name = serializers.CharField(max_length=_max_length(Loader, "name"))
    owner = serializers.SlugField(max_length=_max_length(Team, "slug"), help_text="Slug of the owning team.")
    tags = serializers.ListField(child=serializers.CharField(max_length=_max_length(Tag, "name")), required=False)
    is_paused = serializers.BooleanField(required=False)

    class Meta:
        model = LoaderVersion
        fields = (*LOADER_FIELDS, *CONTRACT_FIELDS)
        extra_kwargs = {
            "connection_password": {
                "write_only": True,
                "style": {"input_type": "password"},
                "help_text": "Write-only; an empty string clears it. Never returned.",
            }
        }


class VersionActionSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="The version number you reviewed; refused if the pending version is another one.",
    )
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class RejectSerializer(VersionActionSerializer):
    reason = serializers.CharField(max_length=2000, help_text="Why the version is rejected (required).")


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="An .xlsx or .csv file (see GET /api/v1/loaders/import/template/).")
    dry_run = serializers.BooleanField(default=True, help_text="true (default): only preview; false: write.")
    submit = serializers.BooleanField(default=False, help_text="Submit the resulting drafts for approval.")


class ImportJobSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = (
            "id",
            "filename",
            "dry_run",
            "submit",
            "status",
            "rows_total",
            "progress",
            "created_by",
            "created_at",
            "finished_at",
            "error",
            "report",
        )
        read_only_fields = fields

    def get_progress(self, job: ImportJob) -> dict[str, int]:
        from loaders.importing import import_job_progress

        done, total = import_job_progress(job)
        return {"rows_done": done, "rows_total": total}
