"""``Authorization: Token <key>`` for DRF, checked by ``etl_monitor.tokens``.

A module of its own: DRF imports the classes of DEFAULT_AUTHENTICATION_CLASSES while its own
views module loads, so this one must not import DRF views (``etl_monitor.auth_api`` does).
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from etl_monitor.models import ApiToken
from etl_monitor.tokens import TokenRefused, api_token_authenticate


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <key>``: a person's API token (ingest tokens use ``Bearer``)."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Token <key>' (one key, no spaces).")
        try:
            token = api_token_authenticate(header[1].decode(errors="replace"))
        except TokenRefused as exc:
            raise exceptions.AuthenticationFailed(exc.message)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
