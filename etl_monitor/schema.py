"""The served OpenAPI schema: YAML by default, JSON by ``?format=json`` or the Accept header."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request


class SchemaFormatNegotiation(DefaultContentNegotiation):
    """``?format=json|yaml`` chooses among the schema's renderers, then Accept decides as usual.

    DRF's own ``?format=`` override is off project-wide (REST_FRAMEWORK URL_FORMAT_OVERRIDE is None:
    elsewhere ``format`` is the export's xlsx|csv), so the schema view reads the parameter itself."""

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: str | None = None) -> tuple:
        wanted = format_suffix or request.query_params.get("format")
        if wanted:
            known = sorted({renderer.format for renderer in renderers})
            if wanted not in known:
                raise ValidationError({"format": [f"Unknown schema format {wanted!r}: choose {' or '.join(known)}."]})
        return super().select_renderer(request, renderers, wanted)


class SchemaView(SpectacularAPIView):
    content_negotiation_class = SchemaFormatNegotiation

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple:
        if force:
            # Negotiation itself failed (an unknown format, an Accept we cannot serve): the error is
            # JSON like every other API error, not a schema renderer's YAML.
            renderer = JSONRenderer()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)
