"""Notification rules, channels, deliveries, data sources and statistics captures over the API:
thin views around the services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from etl_monitor.permissions import RoleModelPermissions, RoleViewPermission
from incidents.api.serializers import IncidentDetailSerializer
from incidents.models import Incident
from integrations.api.serializers import (
    CaptureRunSerializer,
    CaptureSerializer,
    ChannelSerializer,
    ChannelTestSerializer,
    DataSourceSerializer,
    DeliveryDetailSerializer,
    DeliverySerializer,
    NotificationRuleSerializer,
    SourceCheckSerializer,
)
from integrations.models import Capture, Channel, DataSource, Delivery, NotificationRule
from integrations.notifications import channels, outbox, rules
from integrations.notifications.routing import incident_escalate
from integrations.sources import captures, clients, services

MAX_ID = 2**63 - 1  # beyond any primary key, and beyond what the database can compare


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("severity", str)]))
class NotificationRuleViewSet(viewsets.ModelViewSet):
    """Who hears about incidents of each severity (Admin edits; every role reads)."""

    queryset = NotificationRule.objects.none()
    serializer_class = NotificationRuleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[NotificationRule]:
        queryset = NotificationRule.objects.select_related("team", "tag")
        if severity := self.request.query_params.get("severity"):
            queryset = queryset.filter(severity=severity)
        return queryset

    def perform_create(self, serializer: NotificationRuleSerializer) -> None:
        serializer.instance = rules.notification_rule_save(user=self.request.user, data=dict(serializer.validated_data))

    def perform_update(self, serializer: NotificationRuleSerializer) -> None:
        serializer.instance = rules.notification_rule_save(
            user=self.request.user, data=dict(serializer.validated_data), rule=serializer.instance
        )

    def perform_destroy(self, instance: NotificationRule) -> None:
        rules.notification_rule_delete(user=self.request.user, rule=instance)


class ChannelViewSet(viewsets.ModelViewSet):
    """Notification channels (Admin manages them). The secret is write-only: responses say only
    ``has_secret``."""

    queryset = Channel.objects.all()
    serializer_class = ChannelSerializer
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"  # any name reaches the view, so unknown ones get a JSON 404
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_permissions(self) -> list[Any]:
        if self.action == "test":
            return [RoleViewPermission()]  # the service checks the rest and says why
        return super().get_permissions()

    def perform_create(self, serializer: ChannelSerializer) -> None:
        serializer.instance = channels.channel_save(user=self.request.user, data=dict(serializer.validated_data))

    def perform_update(self, serializer: ChannelSerializer) -> None:
        serializer.instance = channels.channel_save(
            user=self.request.user, data=dict(serializer.validated_data), channel=serializer.instance
        )

    def perform_destroy(self, instance: Channel) -> None:
        channels.channel_delete(user=self.request.user, channel=instance)

    @extend_schema(
        summary="Send a test notification now and return its delivery (status, last_error)",
        request=ChannelTestSerializer,
        responses=DeliverySerializer,
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, name: str) -> Response:
        params = ChannelTestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        channel = self.get_object()
        target = params.validated_data.get("target", "").strip()
        delivery = outbox.channel_test(user=request.user, channel=channel, target=target)
        return Response(DeliverySerializer(delivery).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("incident", int),
            OpenApiParameter("status", str),
            OpenApiParameter("channel", str, description="Channel name."),
        ]
    )
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The delivery outbox: every message, its state and its last error; retry the failed ones."""

    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer

    def get_queryset(self) -> QuerySet[Delivery]:
        queryset = Delivery.objects.select_related("channel")
        params = self.request.query_params
        for param, lookup in (("status", "status"), ("channel", "channel__name")):
            if value := params.get(param):
                queryset = queryset.filter(**{lookup: value})
        if incident := params.get("incident"):
            if not (incident.isdigit() and int(incident) <= MAX_ID):
                raise ValidationError({"incident": ["Must be an incident number."]})
            queryset = queryset.filter(incident_id=int(incident))
        return queryset

    def get_serializer_class(self) -> type:
        return DeliveryDetailSerializer if self.action in ("retrieve", "retry") else DeliverySerializer

    def get_permissions(self) -> list[Any]:
        if self.action == "retry":
            return [RoleViewPermission()]  # the service checks the Operator permission and says why
        return super().get_permissions()

    @extend_schema(summary="Send a failed delivery again", request=None, responses=DeliveryDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        delivery = outbox.delivery_retry(user=request.user, delivery=self.get_object())
        return Response(DeliveryDetailSerializer(delivery, context=self.get_serializer_context()).data)


class RoleChangePermission(RoleModelPermissions):
    """``change_<model>`` whatever the method: for actions that make the server act on an object
    (query a data source, run a capture) and have no service of their own to check the role."""

    def get_required_permissions(self, method: str, model_cls: Any) -> list[str]:
        return super().get_required_permissions("PATCH", model_cls)


class DataSourceViewSet(viewsets.ModelViewSet):
    """The Prometheus and Elasticsearch servers rules and captures query (Admin manages them: the
    server fetches their URL). The secret is write-only: responses say only ``has_secret``."""

    queryset = DataSource.objects.all()
    serializer_class = DataSourceSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_permissions(self) -> list[Any]:
        if self.action == "test":
            return [RoleChangePermission()]
        return super().get_permissions()

    def perform_create(self, serializer: DataSourceSerializer) -> None:
        self._save(serializer, None)

    def perform_update(self, serializer: DataSourceSerializer) -> None:
        self._save(serializer, serializer.instance)

    def _save(self, serializer: DataSourceSerializer, source: DataSource | None) -> None:
        data = dict(serializer.validated_data)
        secret = data.pop("secret", "")  # null clears the stored secret, "" keeps it
        serializer.instance = services.data_source_save(
            user=self.request.user, data=data, source=source, secret=secret or "", secret_clear=secret is None
        )

    def perform_destroy(self, instance: DataSource) -> None:
        instance._history_user = self.request.user
        instance.delete()

    @extend_schema(
        summary="Test the connection now: does the source answer as its kind should?",
        request=None,
        responses=SourceCheckSerializer,
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        ok, detail = clients.source_check(self.get_object())
        return Response(SourceCheckSerializer({"ok": ok, "detail": detail}).data)


class CaptureViewSet(viewsets.ModelViewSet):
    """Statistics captures: queries whose values are stored as signals of a loader every bucket
    (Admin manages them: the query runs on the server; every role reads them)."""

    queryset = Capture.objects.select_related("loader")
    serializer_class = CaptureSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_permissions(self) -> list[Any]:
        if self.action == "run":
            return [RoleChangePermission()]
        return super().get_permissions()

    def perform_create(self, serializer: CaptureSerializer) -> None:
        serializer.instance = services.capture_save(user=self.request.user, data=dict(serializer.validated_data))

    def perform_update(self, serializer: CaptureSerializer) -> None:
        serializer.instance = services.capture_save(
            user=self.request.user, data=dict(serializer.validated_data), capture=serializer.instance
        )

    def perform_destroy(self, instance: Capture) -> None:
        # Seeded (system) captures may be deleted too, as in the admin: a rule only the API
        # enforced would not hold. Disabling one is the reversible way to stop it.
        instance._history_user = self.request.user
        instance.delete()

    @extend_schema(
        summary="Capture the bucket that just ended now (a rerun of the same bucket stores nothing)",
        request=None,
        responses=CaptureRunSerializer,
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str) -> Response:
        result = captures.capture_run(self.get_object())
        return Response(CaptureRunSerializer(result).data)


class IncidentEscalateView(generics.GenericAPIView):
    """Notify the next tier of the incident's notification rule now, instead of at its escalation
    timeout: the same step as the timeout, recorded on the timeline with who asked ("from the API").
    An Operator's or Admin's; 409 when the incident is not open, was routed to no rule, or has
    reached its rule's last tier (repeats included)."""

    queryset = Incident.objects.all()
    permission_classes = [RoleViewPermission]  # the service checks escalating and says why
    serializer_class = IncidentDetailSerializer

    @extend_schema(request=None, responses=IncidentDetailSerializer)
    def post(self, request: Request, pk: int) -> Response:
        incident = self.get_object()
        incident_escalate(user=request.user, incident=incident, source="the API")
        return Response(IncidentDetailSerializer(Incident.objects.get(pk=incident.pk)).data)
