"""Ingest tokens and the writer: who may send runs and signals — the rules enforced here and nowhere else.

- An ingest token belongs to one loader. It is issued by whoever holds ``add_ingesttoken``
  (the Editor role); its plaintext is returned once, and the database keeps only its SHA-256
  digest and a prefix (``etl_monitor.tokens.token_digest``, as for people's API tokens).
- Two kinds: an API token (``etlm_…``, ``Authorization: Bearer``) for the ingest API, a ping
  key for the shell-friendly ``/ping/`` URLs only. A revoked token never authenticates again;
  revoking needs ``change_ingesttoken`` and keeps the row, the record of who had access.
- A ``Writer`` is the sender of one request: an API token writes for its own loader only; a
  user (session or API token) needs ``add_signal``. Every write of runs and signals asks it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused
from etl_monitor.permissions import permission_require
from etl_monitor.tokens import LAST_USED_RESOLUTION, token_digest
from loaders.models import Loader, LoaderVersion, VersionState
from signals_app.models import IngestToken

TOKEN_PREFIX = {IngestToken.Kind.API: "etlm_", IngestToken.Kind.PING: ""}


@dataclass(frozen=True)
class Writer:
    """The sender of runs and signals: an ingest token (one loader) or a user."""

    token: IngestToken | None = None
    user: AbstractBaseUser | None = None

    def check(self, loader: Loader) -> None:
        """Refuse unless this sender may write runs and signals for ``loader``."""
        if self.token is not None:
            if self.token.kind != IngestToken.Kind.API:
                raise PermissionRefused("A ping key can only be used with the ping URLs.")
            if self.token.loader_id != loader.pk:
                raise PermissionRefused(f"This token may not write for loader {loader.loader_code}.")
            return
        permission_require(self.user, "signals_app.add_signal", "send runs or signals")


@transaction.atomic
def ingest_token_create(
    *, user: AbstractBaseUser, loader: Loader, name: str, kind: str = IngestToken.Kind.API
) -> tuple[IngestToken, str]:
    """Create a token for ``loader``; returns it with the plaintext, which is never stored or shown again."""
    permission_require(user, "signals_app.add_ingesttoken", "create ingest tokens")
    name = (name or "").strip()
    if not name:
        raise InvalidInput({"name": ["Give the token a name saying what uses it."]})
    if kind not in IngestToken.Kind.values:
        raise InvalidInput({"kind": [f"Choose one of {', '.join(IngestToken.Kind.values)}."]})
    raw = TOKEN_PREFIX[kind] + secrets.token_urlsafe(32 if kind == IngestToken.Kind.API else 18)
    token = IngestToken.objects.create(
        loader=loader, kind=kind, name=name[:100], prefix=raw[:12], token_hash=token_digest(raw), created_by=user
    )
    return token, raw


@transaction.atomic
def ingest_token_revoke(*, user: AbstractBaseUser, token: IngestToken) -> IngestToken:
    """Revoke ``token`` for good (idempotent); the row stays as the record of who had access."""
    permission_require(user, "signals_app.change_ingesttoken", "revoke ingest tokens")
    token = IngestToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at, token.revoked_by = timezone.now(), user
        token.save(update_fields=["revoked_at", "revoked_by"])
    return token


def ingest_token_authenticate(raw: str, *, kind: str | None = None) -> IngestToken | None:
    """The active token matching ``raw`` (of ``kind`` if given), or None. Records its last use."""
    if not raw or len(raw) > 200:
        return None
    active = LoaderVersion.objects.filter(loader=OuterRef("loader_id"), state=VersionState.ACTIVE)
    token = (
        IngestToken.objects.select_related("loader")
        .annotate(loader_has_active=Exists(active))
        .filter(token_hash=token_digest(raw))
        .first()
    )
    if token is None or token.revoked_at is not None or (kind and token.kind != kind):
        return None
    token.loader.has_active = token.loader_has_active  # lets an ingest skip looking the loader up again
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        IngestToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
