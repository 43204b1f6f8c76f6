"""API plumbing shared by every app: error mapping and the OpenAPI error shapes."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError, StateConflict


class RejectUnknownFieldsMixin:
    """Unknown fields are an error, not silently ignored (a typo would otherwise look accepted)."""

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(getattr(self, "initial_data", {}) or {}) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().validate(attrs)


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
