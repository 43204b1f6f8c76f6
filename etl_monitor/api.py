"""API plumbing shared by every app: body parsers, error mapping and the OpenAPI error shapes."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError, StateConflict
from etl_monitor.request_input import NUL_MESSAGE, JSONRefused, form_nul_field, json_loads


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map service errors to HTTP: invalid input 400, role/four-eyes 403, wrong state 409."""
    if isinstance(exc, InvalidInput):
        exc = exceptions.ValidationError(exc.errors)
    elif isinstance(exc, PermissionRefused):
        exc = exceptions.PermissionDenied(exc.message)
    elif isinstance(exc, StateConflict):
        exc = Conflict(exc.message)
    elif isinstance(exc, ServiceError):
        exc = exceptions.ValidationError({"detail": [exc.message]})
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        if not isinstance(detail, list):
            response.data["code"] = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    return response


# --- parsers (DEFAULT_PARSER_CLASSES): malformed bodies answer 400, see etl_monitor.request_input ---


def _form_nul_refuse(data: QueryDict) -> None:
    if (field := form_nul_field(data.lists())) is not None:
        raise exceptions.ValidationError({field: [NUL_MESSAGE]})


class SafeJSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than JSON_MAX_DEPTH (400 ``parse_error``)
    and NUL in any string or key (400 naming the field's path)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return json_loads(stream.read().decode(encoding))
        except JSONRefused as exc:
            if exc.path is None:
                raise exceptions.ParseError(exc.message)
            raise exceptions.ValidationError({exc.path: [exc.message]})
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}")


class SafeFormParser(parsers.FormParser):
    """DRF's form parser, refusing NUL in a field name or value (400 naming the field).
    ``RejectNulMiddleware`` does the same for POST; this covers PUT and PATCH, which Django does not parse."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        _form_nul_refuse(data)
        return data


class SafeMultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing NUL in a field name or value (files are left to their readers)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        _form_nul_refuse(parsed.data)
        return parsed
