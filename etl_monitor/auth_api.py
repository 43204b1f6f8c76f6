"""API authentication for people: POST username + password → an API token.

The password check goes through Django's ``authenticate`` with the plain Django request, so the
login lockout (django-axes, ``etl_monitor.lockout``) counts it and its middleware answers a
locked-out client, exactly as on the admin and browsable-API logins.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class LoginRateThrottle(ScopedRateThrottle):
    """Requests per client address and time window (DRF's scoped throttle), with the rate read
    from the settings at each request rather than once at import."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class PasswordLoginSerializer(serializers.Serializer):
    """Username and password, checked by Django's ``authenticate`` (and so by the lockout)."""

    username = serializers.CharField(write_only=True, max_length=150)
    password = serializers.CharField(
        write_only=True, max_length=4096, trim_whitespace=False, style={"input_type": "password"}
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


class TokenView(ObtainAuthToken):
    """POST username + password → the user's API token (rate limited per client, locked out
    after repeated wrong passwords)."""

    serializer_class = PasswordLoginSerializer
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "auth-token"
