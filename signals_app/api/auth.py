"""Ingest-token authentication and rate limiting for the ingest endpoints."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from signals_app.models import IngestToken
from signals_app.services import ingest_token_authenticate


class IngestClient:
    """The request.user of a request authenticated by an ingest token: no roles, no admin."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, token: IngestToken) -> None:
        self.token = token
        self.username = f"token:{token.prefix}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return False

    def get_username(self) -> str:
        return self.username


class IngestTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <ingest token>`` (user API tokens use ``Token <key>``)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[IngestClient, IngestToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Bearer <ingest token>'.")
        token = ingest_token_authenticate(header[1].decode(errors="replace"), kind=IngestToken.Kind.API)
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked ingest token.")
        return IngestClient(token), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IngestRateThrottle(SimpleRateThrottle):
    """Requests per ingest token (or per user) over time; 429 with Retry-After beyond it."""

    scope = "ingest"

    def get_rate(self) -> str:
        return settings.SIGNAL_INGEST_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, IngestToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IngestTokenScheme(OpenApiAuthenticationExtension):
    """Documents ingest tokens in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = "signals_app.api.auth.IngestTokenAuthentication"
    name = "ingestToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An ingest token of the loader (POST /api/v1/loaders/{code}/tokens/).",
        }
