"""Schedules over the API: read them and who is on call (every role); add and remove overrides
(Operators). Thin views around oncall.schedules and oncall.services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from etl_monitor.permissions import RoleViewPermission
from oncall import schedules, services
from oncall.api.serializers import (
    OnCallQuerySerializer,
    OnCallSerializer,
    OverrideSerializer,
    ScheduleDetailSerializer,
    ScheduleSerializer,
)
from oncall.models import Override, Rotation, RotationMember, Schedule


class ScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """On-call schedules by slug, with their layers; who is on call now and the coming shifts;
    overrides."""

    queryset = Schedule.objects.none()
    serializer_class = ScheduleSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Schedule]:
        queryset = Schedule.objects.select_related("team")
        if self.action == "retrieve":
            members = RotationMember.objects.select_related("user")
            rotations = Rotation.objects.prefetch_related(Prefetch("members", queryset=members))
            queryset = queryset.prefetch_related(Prefetch("rotations", queryset=rotations))
        return queryset

    def get_serializer_class(self) -> type:
        return ScheduleDetailSerializer if self.action == "retrieve" else ScheduleSerializer

    def get_permissions(self) -> list[Any]:
        if self.action in ("overrides", "override_delete"):
            return [RoleViewPermission()]  # the service checks the Operator permission and says why
        return super().get_permissions()

    @extend_schema(
        summary="Who is on call now, and the shifts of the next days (1 to 60, default 14)",
        parameters=[OpenApiParameter("days", int, description="How many days ahead (1..60).")],
        responses=OnCallSerializer,
    )
    @action(detail=True, methods=["get"])
    def oncall(self, request: Request, slug: str) -> Response:
        query = OnCallQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        schedule = self.get_object()
        now = timezone.now()
        found = schedules.shifts(schedule, now, now + dt.timedelta(days=query.validated_data["days"]))
        current = [shift.user.get_username() for shift in found if shift.start <= now < shift.end]
        return Response(OnCallSerializer({"at": now, "oncall": current, "shifts": found}).data)

    @extend_schema(summary="Put someone on call for a period, over every layer", request=OverrideSerializer)
    @action(detail=True, methods=["post"], serializer_class=OverrideSerializer)
    def overrides(self, request: Request, slug: str) -> Response:
        schedule = self.get_object()
        serializer = OverrideSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        override = services.override_save(user=request.user, schedule=schedule, data=dict(serializer.validated_data))
        return Response(OverrideSerializer(override).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Remove an override", request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"overrides/(?P<override_id>[0-9]{1,18})")
    def override_delete(self, request: Request, slug: str, override_id: str) -> Response:
        schedule = self.get_object()
        override = get_object_or_404(Override, schedule=schedule, pk=int(override_id))
        services.override_delete(user=request.user, override=override)
        return Response(status=status.HTTP_204_NO_CONTENT)
