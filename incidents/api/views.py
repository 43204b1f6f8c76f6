"""Rules, silences and incidents over the API: thin views around incidents.services and incidents.silences."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from etl_monitor.permissions import RoleViewPermission
from incidents import services, silences
from incidents.api.serializers import (
    BacktestJobSerializer,
    BacktestQueuedSerializer,
    BacktestRequestSerializer,
    BacktestSerializer,
    CommentSerializer,
    EventSerializer,
    IncidentActionSerializer,
    IncidentDetailSerializer,
    IncidentSerializer,
    RuleDraftBacktestSerializer,
    RuleSerializer,
    SilenceSerializer,
)
from incidents.backtest_jobs import backtest_jobs_visible, rule_backtest_start, rule_draft_backtest_start
from incidents.kinds import kinds_all
from incidents.models import BacktestJob, DetectionRule, EventKind, Incident, Silence
from incidents.selectors import incidents_of_run
from signals_app.models import Run

BACKTEST_QUEUED_WORDS = (
    "Up to BACKTEST_INLINE_MAX in size ((loaders in scope + 40) × evaluations) the backtest runs "
    "while you wait: 200 with the result. A bigger one runs on the worker: 202 with the job's id and URL "
    "(also the Location header); GET that URL until its status is DONE (the result) or FAILED (the error)."
)


class RuleViewSet(viewsets.ModelViewSet):
    """Detection rules (Admin edits; every role reads)."""

    queryset = DetectionRule.objects.prefetch_related("scope_loaders").select_related("scope_tag", "scope_owner")
    serializer_class = RuleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: RuleSerializer) -> None:
        serializer.instance = services.rule_save(user=self.request.user, data=dict(serializer.validated_data))

    def perform_update(self, serializer: RuleSerializer) -> None:
        serializer.instance = services.rule_save(
            user=self.request.user, data=dict(serializer.validated_data), rule=serializer.instance
        )

    @extend_schema(summary="The registered rule kinds and their parameters", responses={200: dict})
    @action(detail=False, methods=["get"], permission_classes=[RoleViewPermission])
    def kinds(self, request: Request) -> Response:
        return Response(
            {
                name: {
                    "rule_type": kind.rule_type,
                    "description": (kind.__doc__ or kind.description).strip(),
                    "default_threshold": kind.default_threshold,
                    "params": {
                        p: {
                            "type": spec.type.__name__,
                            "required": spec.required,
                            "default": spec.default,
                            "choices": spec.choices,
                            "help": spec.help,
                        }
                        for p, spec in kind.params.items()
                    },
                }
                for name, kind in kinds_all().items()
            }
        )

    @extend_schema(
        operation_id="v1_rules_backtest",
        summary="What this rule would have opened over the last N days (nothing is written)",
        description="Reading the rule is enough: a backtest changes nothing. " + BACKTEST_QUEUED_WORDS,
        request=BacktestRequestSerializer,
        responses={200: BacktestSerializer, 202: BacktestQueuedSerializer},
    )
    @action(detail=True, methods=["post"], permission_classes=[RoleViewPermission])
    def backtest(self, request: Request, pk: str) -> Response:
        """Reading the rule is enough: a backtest changes nothing."""
        params = BacktestRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = rule_backtest_start(user=request.user, rule=self.get_object(), days=params.validated_data["days"])
        return _backtest_response(request, result)

    @extend_schema(
        operation_id="v1_rules_backtest_draft",
        summary="What a rule with these settings would have opened (a draft: validated, never saved)",
        description="Needs the permission to add rules, as creating it would. " + BACKTEST_QUEUED_WORDS,
        request=RuleDraftBacktestSerializer,
        responses={200: BacktestSerializer, 202: BacktestQueuedSerializer},
    )
    @action(detail=False, methods=["post"], url_path="backtest")
    def backtest_draft(self, request: Request) -> Response:
        """The permission to add rules, as creating it would need (the service checks it too)."""
        draft = RuleDraftBacktestSerializer(data=request.data)
        draft.is_valid(raise_exception=True)
        data = dict(draft.validated_data)
        days = data.pop("days")
        return _backtest_response(request, rule_draft_backtest_start(user=request.user, data=data, days=days))


def _backtest_response(request: Request, result: Any) -> Response:
    """200 with an inline result; 202 with the job's address for one queued."""
    if not isinstance(result, BacktestJob):
        return Response(result.as_dict())
    url = request.build_absolute_uri(reverse("v1:backtest-detail", args=[result.pk]))
    body = {"id": str(result.pk), "status": result.status, "url": url}
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


@extend_schema_view(retrieve=extend_schema(summary="A backtest job: its status and, once DONE, its result"))
class BacktestJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Backtests run by the worker. Only their requester and Admins see them: anyone else gets a 404."""

    serializer_class = BacktestJobSerializer
    permission_classes = [RoleViewPermission]
    queryset = BacktestJob.objects.none()
    lookup_value_regex = "[0-9a-f-]{36}"

    def get_queryset(self) -> QuerySet[BacktestJob]:
        return backtest_jobs_visible(user=self.request.user)


class SilenceViewSet(viewsets.ModelViewSet):
    """Silences / maintenance windows (Operators and Admins manage them)."""

    queryset = Silence.objects.select_related("loader", "tag", "owner", "rule", "created_by")
    serializer_class = SilenceSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: SilenceSerializer) -> None:
        serializer.instance = silences.silence_save(user=self.request.user, data=dict(serializer.validated_data))

    def perform_update(self, serializer: SilenceSerializer) -> None:
        serializer.instance = silences.silence_save(
            user=self.request.user, data=dict(serializer.validated_data), silence=serializer.instance
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str),
            OpenApiParameter("severity", str),
            OpenApiParameter("loader", str),
            OpenApiParameter("rule", str),
            OpenApiParameter("suppressed", bool),
            OpenApiParameter("run", str, description="A run id: the incidents that run fired."),
        ]
    )
)
class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Incidents: read with filters; acknowledge, resolve, close, comment."""

    queryset = Incident.objects.none()
    serializer_class = IncidentSerializer

    def get_queryset(self) -> QuerySet[Incident]:
        queryset = Incident.objects.select_related("loader", "rule", "acknowledged_by", "resolved_by")
        params = self.request.query_params
        for param, lookup in (
            ("status", "status"),
            ("severity", "severity"),
            ("loader", "loader__loader_code"),
            ("rule", "rule__name"),
        ):
            if value := params.get(param):
                queryset = queryset.filter(**{lookup: value})
        if (suppressed := params.get("suppressed")) is not None:
            queryset = queryset.filter(suppressed=suppressed.lower() in ("1", "true", "yes"))
        if run_id := params.get("run"):  # the incidents one run fired (a run's ``incidents_url``)
            try:
                run = Run.objects.get(run_id=uuid.UUID(run_id))
            except ValueError:
                raise exceptions.ValidationError({"run": ["Must be a run id (a UUID)."]}) from None
            except Run.DoesNotExist:
                return queryset.none()
            queryset = queryset.filter(pk__in=incidents_of_run(run).values("pk"))
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("events__actor")
        return queryset

    def get_serializer_class(self) -> type:
        return IncidentDetailSerializer if self.action == "retrieve" else IncidentSerializer

    def get_permissions(self) -> list[Any]:
        if self.action in ("acknowledge", "resolve", "close", "comments"):
            return [RoleViewPermission()]  # the service checks the Operator permissions and says why
        return super().get_permissions()

    def _act(self, request: Request, run: Any) -> Response:
        params = IncidentActionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        incident = run(self.get_object(), params.validated_data.get("comment", ""))
        return Response(IncidentDetailSerializer(Incident.objects.get(pk=incident.pk)).data)

    @extend_schema(request=IncidentActionSerializer, responses=IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        return self._act(request, lambda i, c: services.incident_acknowledge(user=request.user, incident=i, comment=c))

    @extend_schema(request=IncidentActionSerializer, responses=IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        return self._act(request, lambda i, c: services.incident_resolve(user=request.user, incident=i, comment=c))

    @extend_schema(request=IncidentActionSerializer, responses=IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        return self._act(request, lambda i, c: services.incident_close(user=request.user, incident=i, comment=c))

    @extend_schema(methods=["GET"], responses=EventSerializer(many=True))
    @extend_schema(methods=["POST"], request=CommentSerializer, responses={201: EventSerializer})
    @action(detail=True, methods=["get", "post"])
    def comments(self, request: Request, pk: str) -> Response:
        incident = self.get_object()
        if request.method == "GET":
            return Response(EventSerializer(incident.events.filter(kind=EventKind.COMMENTED), many=True).data)
        params = CommentSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        event = services.incident_comment(user=request.user, incident=incident, text=params.validated_data["text"])
        return Response(EventSerializer(event).data, status=status.HTTP_201_CREATED)
