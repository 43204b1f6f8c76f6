"""DRF's parsers, refusing malformed bodies with a 400 (DEFAULT_PARSER_CLASSES; see
``etl_monitor.request_input``). Apart from ``etl_monitor.api`` because DRF imports these while
``rest_framework.views`` is still loading, and that module imports ``rest_framework.views``."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import exceptions, parsers

from etl_monitor.request_input import NUL_MESSAGE, JSONRefused, form_nul_field, json_loads


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
