"""Ingest endpoints: signals, runs, ingest tokens, and the shell-friendly ping URLs."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from etl_monitor.errors import ServiceError
from etl_monitor.permissions import RoleModelPermissions, RoleViewPermission
from etl_monitor.request_input import json_loads
from etl_monitor.token_auth import ApiTokenAuthentication
from loaders.models import Loader
from signals_app import services, tokens
from signals_app.api.auth import IngestRateThrottle, IngestTokenAuthentication
from signals_app.api.serializers import (
    IngestResultSerializer,
    IngestTokenCreatedSerializer,
    IngestTokenCreateSerializer,
    IngestTokenSerializer,
    RunFinishSerializer,
    RunSerializer,
    RunStartSerializer,
    SignalInSerializer,
    SignalSerializer,
    WhoAmISerializer,
)
from signals_app.models import IngestToken, Run, RunStatus, Signal

INGEST_AUTH = [IngestTokenAuthentication, ApiTokenAuthentication, SessionAuthentication]


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def json_body(request: Request) -> Any:
    """The request body as JSON, with clear 415 / 413 / 400 answers (parsed here, not by DRF,
    so the size is checked before anything is read)."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise exceptions.UnsupportedMediaType(content_type or "(none)", "Send the body as application/json.")
    limit = settings.SIGNAL_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise PayloadTooLarge(f"The body is {length} bytes; the limit is {limit} bytes. Send smaller batches.")
    body = request._request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes. Send smaller batches.")
    try:
        return json_loads(body or b"null", parse_constant=_reject_constant, nul_allowed=True)  # services judge NUL
    except (ValueError, UnicodeDecodeError) as exc:
        raise exceptions.ParseError(f"The body is not valid JSON: {exc}")


def writer_of(request: Request) -> tokens.Writer:
    if isinstance(request.auth, IngestToken):
        return tokens.Writer(token=request.auth)
    return tokens.Writer(user=request.user)


class SignalCursorPagination(CursorPagination):
    ordering = ("-captured_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class SignalViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``POST`` one signal or a list (all or nothing); ``GET`` filtered, cursor-paginated."""

    queryset = Signal.objects.none()
    serializer_class = SignalSerializer
    pagination_class = SignalCursorPagination

    def get_authenticators(self) -> list[Any]:
        return [auth() for auth in INGEST_AUTH]

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated()]
        return [RoleModelPermissions()]

    def get_throttles(self) -> list[Any]:
        return [IngestRateThrottle()] if self.request.method == "POST" else []

    def get_queryset(self) -> QuerySet[Signal]:
        params = self.request.query_params
        if any("\x00" in value for value in params.values()):
            raise exceptions.ValidationError(
                {"non_field_errors": ["Query parameters must not contain NUL characters."]}
            )
        queryset = Signal.objects.select_related("loader", "run")
        filters = {
            "loader": "loader__loader_code",
            "status": "validation_status",
            "metric_type": "metric_type",
            "metric_source": "metric_source",
            "correlation_id": "correlation_id",
            "signal_key": "signal_key",
            "run_id": "run__run_id",
        }
        for param, lookup in filters.items():
            if value := params.get(param):
                if param == "run_id":
                    try:
                        value = uuid.UUID(value)
                    except ValueError:
                        raise exceptions.ValidationError({param: ["Must be a UUID."]})
                queryset = queryset.filter(**{lookup: value})
        for param, lookup in (("from", "captured_at__gte"), ("to", "captured_at__lt")):
            if moment := _moment(params, param):
                queryset = queryset.filter(**{lookup: moment})
        return queryset

    @extend_schema(
        summary="List signals (filters: loader, from, to, status, metric_type, metric_source, correlation_id, "
        "signal_key, run_id)",
        parameters=[
            OpenApiParameter(name, str)
            for name in (
                "loader",
                "from",
                "to",
                "status",
                "metric_type",
                "metric_source",
                "correlation_id",
                "signal_key",
                "run_id",
            )
        ],
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Send one signal or a list of up to SIGNAL_BATCH_MAX signals (all or nothing)",
        request=SignalInSerializer(many=True),
        responses={201: IngestResultSerializer},
        examples=[
            OpenApiExample(
                "One signal",
                value={
                    "loader_code": "SALES-DAILY",
                    "signal_key": "rows_loaded",
                    "signal_value": 1234,
                    "validation_status": "SUCCESS",
                    "metric_type": "ROW_COUNT",
                    "captured_at": "2026-11-28T02:31:00Z",
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        result = services.signals_ingest(writer=writer_of(request), payload=json_body(request))
        return Response(result, status=status.HTTP_201_CREATED)


class RunCursorPagination(CursorPagination):
    # A cursor, not page numbers: runs arrive all the time and a page must not shift under its reader.
    ordering = ("-started_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET`` lists runs (filtered, cursor-paginated) or reads one; ``POST`` starts a run;
    ``PATCH /{run_id}/`` finishes it."""

    queryset = Run.objects.select_related("loader", "loader_version")
    serializer_class = RunSerializer
    pagination_class = RunCursorPagination
    lookup_field = "run_id"
    lookup_value_regex = r"[0-9a-fA-F-]{32,36}"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_authenticators(self) -> list[Any]:
        return [auth() for auth in INGEST_AUTH]

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()]

    def get_throttles(self) -> list[Any]:
        return [IngestRateThrottle()] if self.request.method in ("POST", "PATCH") else []

    def _run(self, run_id: str) -> Run:
        try:
            run_uuid = uuid.UUID(run_id)
        except ValueError:
            raise exceptions.NotFound("No run with this id (run ids are UUIDs).")
        return get_object_or_404(self.get_queryset(), run_id=run_uuid)

    def filter_queryset(self, queryset: QuerySet[Run]) -> QuerySet[Run]:
        """The list: a person needs a role that reads runs; an ingest token sees its loader's only."""
        if self.action != "list":
            return queryset
        if isinstance(self.request.auth, IngestToken):
            queryset = queryset.filter(loader_id=self.request.auth.loader_id)
        elif not self.request.user.has_perm("signals_app.view_run"):
            raise exceptions.PermissionDenied("Your role does not allow you to read runs.")
        return runs_filter(queryset, self.request.query_params)

    @extend_schema(
        summary="List runs, newest first (filters: loader, status, from, to; cursor-paginated)",
        parameters=[
            OpenApiParameter("loader", str, description="A loader code."),
            OpenApiParameter("status", str, enum=RunStatus.values),
            OpenApiParameter("from", str, description="Started at or after (ISO 8601 with a time zone)."),
            OpenApiParameter("to", str, description="Started before (ISO 8601 with a time zone)."),
            OpenApiParameter("page_size", int, description="Up to 500 (default 50)."),
        ],
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_object(self) -> Run:
        run = self._run(self.kwargs["run_id"])
        if isinstance(self.request.auth, IngestToken):
            if self.request.auth.loader_id != run.loader_id:
                raise exceptions.NotFound()
        elif not self.request.user.has_perm("signals_app.view_run"):
            raise exceptions.PermissionDenied("Your role does not allow you to read runs.")
        return run

    @extend_schema(
        summary="Start a run (a retried start with the same run_id answers 200 and changes nothing)",
        request=RunStartSerializer,
        responses={201: RunSerializer, 200: RunSerializer},
        examples=[
            OpenApiExample(
                "Start",
                value={
                    "loader_code": "SALES-DAILY",
                    "run_id": "7d1f0c2e-5b8a-4c1e-9a4b-2f6d8e0c1a3b",
                    "correlation_id": "airflow-sales-2026-11-28",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        run, created = services.run_start(writer=writer_of(request), data=_mapping(json_body(request)))
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        summary="Finish a run (its standard signals are recorded)",
        request=RunFinishSerializer,
        responses=RunSerializer,
        examples=[
            OpenApiExample(
                "Succeeded",
                value={"status": "SUCCEEDED", "rows_read": 500, "rows_written": 480, "rows_rejected": 20},
                request_only=True,
            ),
            OpenApiExample("Failed", value={"status": "FAILED", "error_text": "Connection reset"}, request_only=True),
        ],
    )
    def partial_update(self, request: Request, run_id: str) -> Response:
        run = self._run(run_id)
        if isinstance(request.auth, IngestToken) and request.auth.loader_id != run.loader_id:
            raise exceptions.NotFound()
        run = services.run_finish(writer=writer_of(request), run=run, data=_mapping(json_body(request)))
        return Response(RunSerializer(run).data)


def _moment(params: Any, name: str) -> Any:
    """The time in query parameter ``name`` (None when absent); 400 naming it when it is no time."""
    value = params.get(name)
    if not value:
        return None
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise exceptions.ValidationError({name: ["Use an ISO 8601 timestamp with a time zone."]})
    return moment


def runs_filter(queryset: QuerySet[Run], params: Any) -> QuerySet[Run]:
    """The run list's filters; a value that cannot be one is a 400 naming its parameter."""
    if any("\x00" in value for value in params.values()):
        raise exceptions.ValidationError({"non_field_errors": ["Query parameters must not contain NUL characters."]})
    if code := params.get("loader"):
        queryset = queryset.filter(loader__loader_code=code)
    if run_status := params.get("status"):
        if run_status.upper() not in RunStatus.values:
            raise exceptions.ValidationError({"status": [f"Unknown status; use one of {', '.join(RunStatus.values)}."]})
        queryset = queryset.filter(status=run_status.upper())
    if since := _moment(params, "from"):
        queryset = queryset.filter(started_at__gte=since)
    if until := _moment(params, "to"):
        queryset = queryset.filter(started_at__lt=until)
    return queryset


def _mapping(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise exceptions.ValidationError({"non_field_errors": ["Send a JSON object."]})
    return payload


class LoaderTokenViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Ingest tokens of one loader: list, create (plaintext shown once), revoke (DELETE)."""

    serializer_class = IngestTokenSerializer
    queryset = IngestToken.objects.none()
    pagination_class = None

    def get_permissions(self) -> list[Any]:
        if self.action == "destroy":
            return [RoleViewPermission()]  # the revoke service checks change_ingesttoken
        return super().get_permissions()

    def _loader(self) -> Loader:
        return get_object_or_404(Loader, loader_code=self.kwargs["loader_code"])

    def get_queryset(self) -> QuerySet[IngestToken]:
        return IngestToken.objects.filter(loader=self._loader()).select_related("created_by", "revoked_by")

    @extend_schema(
        summary="Create an ingest token or ping key (the plaintext is in this answer only)",
        request=IngestTokenCreateSerializer,
        responses={201: IngestTokenCreatedSerializer},
    )
    def create(self, request: Request, loader_code: str) -> Response:
        params = IngestTokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        token, raw = tokens.ingest_token_create(
            user=request.user,
            loader=self._loader(),
            name=params.validated_data["name"],
            kind=params.validated_data["kind"],
        )
        body = {**IngestTokenSerializer(token).data, "token": raw}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke a token (kept for the record, never usable again)", responses={204: None})
    def destroy(self, request: Request, loader_code: str, pk: str) -> Response:
        token = get_object_or_404(self.get_queryset(), pk=pk)
        tokens.ingest_token_revoke(user=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- ping URLs ---------------------------------------------------------------------------------


@csrf_exempt
def ping(request: HttpRequest, key: str, loader_code: str, action: str = "success") -> HttpResponse:
    """``/ping/<key>/<loader_code>[/start|/fail|/<exit status>][?rid=<uuid>]`` by GET or POST, for cron
    and shell scripts; ``rid`` ties a start to its finish and makes a retried ping harmless."""
    if request.method not in ("GET", "POST", "HEAD"):
        return HttpResponse("Use GET or POST.\n", status=405, content_type="text/plain")
    token = tokens.ingest_token_authenticate(key, kind=IngestToken.Kind.PING)
    if token is None:
        return HttpResponse("Unknown or revoked ping key.\n", status=404, content_type="text/plain")
    if request.method == "HEAD":
        return HttpResponse(content_type="text/plain")  # link checkers and monitors: answer, record nothing
    limit = settings.PING_BODY_MAX_BYTES
    body = request.read(limit + 1) if request.method == "POST" else b""
    excerpt = body[:limit].decode("utf-8", errors="replace")
    if len(body) > limit:
        excerpt += "\n…(truncated)"
    try:
        run = services.ping_record(
            token=token, loader_code=loader_code, action=action, body=excerpt, rid=request.GET.get("rid", "")
        )
    except ServiceError as exc:
        code = 403 if exc.code == "permission_denied" else 400
        return HttpResponse(f"{exc}\n", status=code, content_type="text/plain")
    return HttpResponse(f"OK {run.run_id} {run.status}\n", content_type="text/plain")


class WhoAmIView(viewsets.ViewSet):
    """Who the credentials belong to — lets a job check its token (and is the cheapest authenticated call)."""

    authentication_classes = INGEST_AUTH
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Who am I (check a token)", responses=WhoAmISerializer)
    def list(self, request: Request) -> Response:
        if isinstance(request.auth, IngestToken):
            body = {"kind": "ingest_token", "name": request.auth.name, "loader_code": request.auth.loader.loader_code}
        else:
            from etl_monitor.roles import user_roles

            body = {"kind": "user", "name": request.user.get_username(), "roles": user_roles(request.user)}
        return Response(body)
