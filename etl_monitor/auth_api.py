"""API authentication for people: POST username + password → an API token; list and revoke tokens.

The password check goes through Django's ``authenticate`` with the plain Django request, so the
login lockout (django-axes, ``etl_monitor.lockout``) counts it and its middleware answers a
locked-out client, exactly as on the admin and browsable-API logins. Tokens are hashed, expire
and can be revoked (``etl_monitor.tokens``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from etl_monitor import tokens
from etl_monitor.models import ApiToken
from etl_monitor.outage import cache_call


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents user API tokens in the OpenAPI schema (``Authorization: Token <key>``)."""

    target_class = "etl_monitor.token_auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'Token-based authentication with required prefix "Token" (POST /api/v1/auth/token/).',
        }


class LoginRateThrottle(ScopedRateThrottle):
    """Requests per client address and time window (DRF's scoped throttle), with the rate read
    from the settings at each request rather than once at import."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        # The cache (Redis) unavailable: let the request through rather than fail it; the lockout
        # (in the database) still counts every wrong password (etl_monitor.outage).
        allowed = cache_call(lambda: ScopedRateThrottle.allow_request(self, request, view))
        return True if allowed is None else allowed


class PasswordLoginSerializer(serializers.Serializer):
    """Username and password, checked by Django's ``authenticate`` (and so by the lockout)."""

    username = serializers.CharField(write_only=True, max_length=150)
    password = serializers.CharField(
        write_only=True, max_length=4096, trim_whitespace=False, style={"input_type": "password"}
    )
    name = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=100, help_text="What will use the token."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context["request"]
        # The Django request, not DRF's wrapper: the lockout marks it, and its middleware reads the mark.
        user = authenticate(
            getattr(request, "_request", request), username=attrs["username"], password=attrs["password"]
        )
        if user is None:  # also for an inactive user (ModelBackend refuses them)
            raise serializers.ValidationError("Unable to log in with provided credentials.", code="authorization")
        attrs["user"] = user
        return attrs


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as anyone sees it later: never its key, nor its digest."""

    user = serializers.CharField(source="user.get_username", read_only=True)
    revoked_by = serializers.CharField(source="revoked_by.get_username", read_only=True, default=None)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "user",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "revoked_by",
            "is_active",
        ]
        read_only_fields = fields


class ApiTokenIssuedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The key. Shown this once; only a digest is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields


class TokenView(APIView):
    """POST username + password → a new API token (rate limited per client, locked out after
    repeated wrong passwords)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "auth-token"

    @extend_schema(
        summary="Exchange a username and password for a new API token",
        request=PasswordLoginSerializer,
        responses={200: ApiTokenIssuedSerializer},
    )
    def post(self, request: Request) -> Response:
        login = PasswordLoginSerializer(data=request.data, context={"request": request})
        login.is_valid(raise_exception=True)
        token, raw = tokens.api_token_create(user=login.validated_data["user"], name=login.validated_data.get("name"))
        return Response({**ApiTokenSerializer(token).data, "token": raw}, status=status.HTTP_200_OK)


class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your API tokens (an Admin: everyone's), without their keys; DELETE revokes one."""

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    queryset = ApiToken.objects.none()
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[ApiToken]:
        tokens_ = ApiToken.objects.select_related("user", "revoked_by")
        if self.request.user.has_perm("etl_monitor.view_apitoken"):
            return tokens_
        return tokens_.filter(user=self.request.user)

    @extend_schema(summary="Revoke a token (kept for the record, never usable again)", responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        token = get_object_or_404(self.get_queryset(), pk=pk)
        tokens.api_token_revoke(user=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
