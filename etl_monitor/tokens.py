"""People's API tokens: issue, authenticate, revoke — the rules enforced here and nowhere else.

- A token is issued only after a password check (POST /api/v1/auth/token/, under the login
  lockout) and its key is returned once; the database keeps a SHA-256 digest and a prefix,
  as for ingest tokens, so a database dump holds no usable credential.
- A token expires ``API_TOKEN_TTL_DAYS`` after it was issued; expired, revoked, or of an
  inactive user, it is refused with a message saying which.
- Its owner may revoke it, and so may whoever holds ``etl_monitor.change_apitoken`` (Admin).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError
from etl_monitor.models import ApiToken

KEY_PREFIX = "etlu_"  # tells a person's token from an ingest token (etlm_) at a glance
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # don't write the token row on every request


class TokenRefused(ServiceError):
    """The presented token does not authenticate; the message says why. HTTP 401."""

    code = "authentication_failed"


def token_digest(raw: str) -> str:
    """The stored form of a token (user API tokens and ingest tokens alike).

    Tokens are 256-bit random values: a fast hash is enough (there is no dictionary to guess from).
    """
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Issue a token for ``user`` (whose password was just checked); returns it with its key,
    which is never stored or shown again. Each call issues a new token: the old ones keep
    working until they expire or are revoked."""
    if not user.is_active:
        raise PermissionRefused("This account is inactive.")
    name = (name or "").strip()
    if len(name) > 100:
        raise InvalidInput({"name": ["At most 100 characters."]})
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=raw[:12],
        token_hash=token_digest(raw),
        expires_at=timezone.now() + dt.timedelta(days=settings.API_TOKEN_TTL_DAYS),
    )
    return token, raw


def api_token_authenticate(raw: str) -> ApiToken:
    """The active token whose key is ``raw``, with its user; records its last use.

    Raises TokenRefused saying why: unknown, revoked (when), expired (when) or of an inactive user.
    """
    token = None
    if raw and len(raw) <= 200:
        token = ApiToken.objects.select_related("user").filter(token_hash=token_digest(raw)).first()
    if token is None:
        raise TokenRefused("Invalid token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused(
            f"This API token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC; "
            "get a new one with POST /api/v1/auth/token/."
        )
    if token.expires_at <= now:
        raise TokenRefused(
            f"This API token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; "
            "get a new one with POST /api/v1/auth/token/."
        )
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def api_token_revoke(*, user: AbstractBaseUser, token: ApiToken) -> ApiToken:
    """Revoke ``token`` for good (idempotent): its owner may, and an Admin may revoke anyone's."""
    if token.user_id != user.pk and not user.has_perm("etl_monitor.change_apitoken"):
        raise PermissionRefused("You may revoke only your own API tokens.")
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at, token.revoked_by = timezone.now(), user
        token.save(update_fields=["revoked_at", "revoked_by"])
    return token
