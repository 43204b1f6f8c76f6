"""Loader endpoints: thin — parse input, call one service, format the result."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from etl_monitor.downloads import file_response
from etl_monitor.errors import StateConflict
from etl_monitor.permissions import RoleViewPermission
from etl_monitor.protection import policy_for
from loaders import exporting, importing, selectors, services
from loaders.api.serializers import (
    ImportJobSerializer,
    ImportRequestSerializer,
    LoaderDetailSerializer,
    LoaderListSerializer,
    LoaderWriteSerializer,
    RejectSerializer,
    VersionActionSerializer,
    VersionSerializer,
)
from loaders.models import ImportJob, Loader, LoaderVersion, VersionState
from loaders.spreadsheets import SpreadsheetError


def _job_uuid(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFound("No import with this id.")


STATE_FILTERS = {
    "pending": {"has_pending": True},
    "active": {"has_active": True},
    "no_active": {"has_active": False},
}


@extend_schema_view(
    list=extend_schema(
        summary="List loaders",
        parameters=[
            OpenApiParameter("search", str, description="Substring of code, name or owner name."),
            OpenApiParameter("owner", str, description="Team slug."),
            OpenApiParameter("tag", str, description="Tag name."),
            OpenApiParameter("state", str, enum=list(STATE_FILTERS), description="pending | active | no_active"),
            OpenApiParameter("paused", bool),
        ],
    ),
    retrieve=extend_schema(summary="A loader with its ACTIVE and open (draft/pending) version"),
    create=extend_schema(
        summary="Create a loader (its first version is a DRAFT)",
        request=LoaderWriteSerializer,
        responses={201: LoaderDetailSerializer},
    ),
    partial_update=extend_schema(
        summary="Edit a loader: identity fields at once, contract fields in the draft",
        request=LoaderWriteSerializer,
        responses={200: LoaderDetailSerializer},
    ),
)
class LoaderViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    lookup_field = "loader_code"
    lookup_value_regex = r"[^/]+"  # any code reaches the view, so unknown ones get a JSON 404
    http_method_names = ["get", "post", "patch", "head", "options"]
    queryset = Loader.objects.none()  # model for permission checks; real reads use the selector

    def get_queryset(self) -> QuerySet[Loader]:
        params = self.request.query_params
        policy = policy_for(self.request.user, Loader)
        protected = policy.hidden | policy.masked  # never filter or search on what the user may not see
        queryset = selectors.loader_list(search=params.get("search", "").strip(), exclude=protected)
        for param, field, lookup in (("owner", "owner", "owner__slug"), ("tag", "tags", "tags__name")):
            if value := params.get(param):
                if field in protected:
                    raise ValidationError({param: ["This filter is not available to your role."]})
                queryset = queryset.filter(**{lookup: value})
        if state := params.get("state"):
            queryset = queryset.filter(**STATE_FILTERS.get(state, {"pk__in": []}))
        if (paused := params.get("paused")) is not None:
            if "is_paused" in protected:
                raise ValidationError({"paused": ["This filter is not available to your role."]})
            queryset = queryset.filter(is_paused=paused.lower() in ("1", "true", "yes"))
        return queryset.order_by("loader_code")

    def get_object(self) -> Loader:
        if self.action == "retrieve":
            loader = get_object_or_404(selectors.loader_detail_list(), loader_code=self.kwargs["loader_code"])
            self.check_object_permissions(self.request, loader)
            return loader
        return super().get_object()

    def get_serializer_class(self) -> type:
        if self.action == "list":
            return LoaderListSerializer
        if self.action in ("create", "partial_update"):
            return LoaderWriteSerializer
        return LoaderDetailSerializer

    def get_permissions(self) -> list[Any]:
        if self.action in (
            "submit",
            "withdraw",
            "approve",
            "reject",
            "versions",
            "import_",
            "import_status",
            "import_template",
            "export",
        ):
            return [RoleViewPermission()]
        return super().get_permissions()

    def _detail(self, loader_code: str, status_code: int = status.HTTP_200_OK) -> Response:
        loader = get_object_or_404(selectors.loader_detail_list(), loader_code=loader_code)
        return Response(LoaderDetailSerializer(loader, context=self.get_serializer_context()).data, status=status_code)

    def create(self, request: Request) -> Response:
        serializer = LoaderWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        loader = services.loader_create(user=request.user, data=serializer.validated_data)
        return self._detail(loader.loader_code, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, loader_code: str) -> Response:
        loader = self.get_object()
        serializer = LoaderWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        reason = request.query_params.get("reason", "")
        loader = services.loader_edit(user=request.user, loader=loader, data=serializer.validated_data, reason=reason)
        return self._detail(loader.loader_code)

    # --- bulk import / export -------------------------------------------------------

    @extend_schema(
        summary="Import loaders from xlsx/csv (dry run by default)",
        request={"multipart/form-data": ImportRequestSerializer},
        responses={
            200: ImportJobSerializer,
            201: ImportJobSerializer,
            202: ImportJobSerializer,
            400: ImportJobSerializer,
        },
    )
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[MultiPartParser, FormParser])
    def import_(self, request: Request) -> Response:
        params = ImportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["file"]
        if upload.size > settings.LOADER_IMPORT_MAX_BYTES:
            limit, size = settings.LOADER_IMPORT_MAX_BYTES / 1048576, upload.size / 1048576
            raise ValidationError({"file": [f"The file is {size:.1f} MB; the limit is {limit:.1f} MB."]})
        try:
            job = importing.import_job_create(
                user=request.user,
                content=upload.read(),
                filename=upload.name or "upload",
                dry_run=params.validated_data["dry_run"],
                submit=params.validated_data["submit"],
            )
        except SpreadsheetError as exc:
            raise ValidationError({"file": [exc.message]})
        body = ImportJobSerializer(job, context=self.get_serializer_context()).data
        if job.status == ImportJob.Status.QUEUED:
            return Response(body, status=status.HTTP_202_ACCEPTED)
        if job.status == ImportJob.Status.FAILED or not (job.report or {}).get("ok"):
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_200_OK if job.dry_run else status.HTTP_201_CREATED)

    @extend_schema(summary="Status, progress and report of an import", responses=ImportJobSerializer)
    @action(detail=False, methods=["get"], url_path=r"import/(?P<job_id>[0-9a-f-]{36})")
    def import_status(self, request: Request, job_id: str) -> Response:
        job = get_object_or_404(ImportJob, pk=_job_uuid(job_id))
        if job.created_by_id != request.user.pk and not request.user.has_perm("loaders.delete_importjob"):
            raise NotFound()
        return Response(ImportJobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Confirm a preview: import the rows it checked (only its uploader)",
        request=None,
        responses={201: ImportJobSerializer, 202: ImportJobSerializer, 400: ImportJobSerializer},
    )
    @action(detail=False, methods=["post"], url_path=r"import/(?P<job_id>[0-9a-f-]{36})/confirm")
    def import_confirm(self, request: Request, job_id: str) -> Response:
        preview = get_object_or_404(ImportJob, pk=_job_uuid(job_id), created_by=request.user)
        job = importing.import_job_confirm(user=request.user, preview=preview)
        body = ImportJobSerializer(job, context=self.get_serializer_context()).data
        if job.status == ImportJob.Status.QUEUED:
            return Response(body, status=status.HTTP_202_ACCEPTED)
        if job.status == ImportJob.Status.FAILED or not (job.report or {}).get("ok"):
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="The import template (xlsx with an example row and a notes sheet)", responses={200: bytes})
    @action(detail=False, methods=["get"], url_path="import/template")
    def import_template(self, request: Request) -> HttpResponse:
        return file_response(importing.loaders_template(), "xlsx", "loader-import-template")

    @extend_schema(
        summary="Export loaders (same filters as the list)",
        parameters=[OpenApiParameter("format", str, enum=["xlsx", "csv"], description="Default xlsx.")],
        responses={200: bytes},
    )
    @action(detail=False, methods=["get"])
    def export(self, request: Request) -> HttpResponse:
        file_format = request.query_params.get("format", "xlsx")
        if file_format not in ("xlsx", "csv"):
            raise ValidationError({"format": ["Choose xlsx or csv."]})
        content = exporting.loaders_export_now(user=request.user, loaders=self.get_queryset(), file_format=file_format)
        return file_response(content, file_format, "loaders")

    @extend_schema(summary="Version history, newest first", responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, loader_code: str) -> Response:
        loader = self.get_object()
        page = self.paginate_queryset(selectors.loader_versions(loader=loader))
        return self.get_paginated_response(
            VersionSerializer(page, many=True, context=self.get_serializer_context()).data
        )

    def _target_version(self, loader: Loader, number: int | None, wanted: VersionState) -> LoaderVersion:
        versions = loader.versions.all()
        if number is not None:
            version = versions.filter(number=number).first()
            if version is None:
                raise StateConflict(f"{loader.loader_code} has no version {number}.")
            return version
        version = versions.filter(state=wanted).first()
        if version is None:
            # Let the service explain (e.g. "already approved by …") using the newest version.
            version = versions.order_by("-number").first()
        if version is None:
            raise StateConflict(f"{loader.loader_code} has no versions.")
        return version

    def _transition(
        self, request: Request, loader_code: str, serializer_class: type, wanted: VersionState, run: Any
    ) -> Response:
        loader = self.get_object()
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = self._target_version(loader, serializer.validated_data.get("version"), wanted)
        run(version, serializer.validated_data)
        return self._detail(loader.loader_code)

    @extend_schema(
        summary="Submit the draft for approval", request=VersionActionSerializer, responses=LoaderDetailSerializer
    )
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, loader_code: str) -> Response:
        return self._transition(
            request,
            loader_code,
            VersionActionSerializer,
            VersionState.DRAFT,
            lambda v, d: services.loader_version_submit(user=request.user, version=v, comment=d.get("comment", "")),
        )

    @extend_schema(
        summary="Withdraw the pending version back to draft",
        request=VersionActionSerializer,
        responses=LoaderDetailSerializer,
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, loader_code: str) -> Response:
        return self._transition(
            request,
            loader_code,
            VersionActionSerializer,
            VersionState.PENDING_APPROVAL,
            lambda v, d: services.loader_version_withdraw(user=request.user, version=v, comment=d.get("comment", "")),
        )

    @extend_schema(
        summary="Approve the pending version (four-eyes)",
        request=VersionActionSerializer,
        responses=LoaderDetailSerializer,
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, loader_code: str) -> Response:
        return self._transition(
            request,
            loader_code,
            VersionActionSerializer,
            VersionState.PENDING_APPROVAL,
            lambda v, d: services.loader_version_approve(user=request.user, version=v, comment=d.get("comment", "")),
        )

    @extend_schema(
        summary="Reject the pending version with a reason", request=RejectSerializer, responses=LoaderDetailSerializer
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, loader_code: str) -> Response:
        return self._transition(
            request,
            loader_code,
            RejectSerializer,
            VersionState.PENDING_APPROVAL,
            lambda v, d: services.loader_version_reject(user=request.user, version=v, reason=d["reason"]),
        )
