"""Ingest-token authentication and rate limiting for the ingest endpoints."""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from etl_monitor import outage
from signals_app import metrics
from signals_app.models import IngestToken
from signals_app.tokens import ingest_token_authenticate


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


class IngestRateThrottle(BaseThrottle):
    """Requests per ingest token (or user) per time window; 429 with Retry-After beyond it.

    A fixed-window counter (one atomic increment per request, one round trip to Redis) rather
    than DRF's sliding history list, whose get/set of every request's timestamp grows with
    the allowed rate and would dominate the cost of a single-signal POST.

    It fails open: the count lives in the cache (Redis), the data in the database, so with the
    cache unavailable a request is let through unlimited rather than refused — counted in
    ``ingest_rate_limit_unavailable_total`` and logged once per outage (``etl_monitor.outage``).
    """

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    @staticmethod
    def parse(rate: str) -> tuple[int, int]:
        count, _, period = rate.partition("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0].lower()]
        return int(count), seconds

    def allow_request(self, request: Request, view: Any) -> bool:
        limit, window = self.parse(settings.SIGNAL_INGEST_RATE)
        if isinstance(request.auth, IngestToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        now = time.time()
        bucket = int(now // window)
        key = f"ingest-rate:{ident}:{bucket}"
        count = outage.cache_call(lambda: self._count(key, window), on_unavailable=metrics.rate_limit_unavailable)
        if count is None:  # the cache is unavailable: nothing can count, the database still stores
            return True
        if count > limit:
            self.wait_seconds = (bucket + 1) * window - now
            return False
        return True

    @staticmethod
    def _count(key: str, window: int) -> int:
        """This request's number in its window.

        On Redis, INCR and EXPIRE in one pipeline: one round trip. Django's cache API would take
        three (``add``; ``incr`` asks EXISTS before INCR) and build a client object for each call.
        The expiry is renewed with every count, which only delays the removal of a window's key:
        its bucket is in its name, so no later window counts on it. Other caches (development,
        tests without Redis): add, then increment.
        """
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            full_key = backend.make_and_validate_key(key)
            pipeline = _redis_client(backend).pipeline(transaction=False)
            pipeline.incr(full_key).expire(full_key, window + 5)
            return pipeline.execute()[0]
        backend.add(key, 0, timeout=window + 5)
        try:
            return backend.incr(key)
        except ValueError:  # expired between add and incr: start the window again
            backend.set(key, 1, timeout=window + 5)
            return 1

    def wait(self) -> float | None:
        return self.wait_seconds


_REDIS_CLIENTS: WeakKeyDictionary[RedisCache, Any] = WeakKeyDictionary()


def _redis_client(backend: RedisCache) -> Any:
    """``backend``'s Redis client (on its connection pool), made once per cache backend — that is
    per thread, and again when the cache settings change. Django makes a new client object for
    every cache call, and setting one up costs more than the round trip it is for."""
    client = _REDIS_CLIENTS.get(backend)
    if client is None:
        # RedisCacheClient.get_client is Django's hook for custom clients; _cache holds that client.
        client = _REDIS_CLIENTS[backend] = backend._cache.get_client(write=True)
    return client


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
