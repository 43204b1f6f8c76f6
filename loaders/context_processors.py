"""The header's "N waiting for your approval" link, for people who may approve."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from loaders import selectors


def pending_approvals(request: HttpRequest) -> dict[str, Any]:
    """``pending_approvals_count``: the versions this user could approve now (0 for people who
    cannot approve). Lazy, so a page that does not show the header costs no query."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {}

    def count() -> int:
        # Asked only by a page that shows the header (the admin's, and any page built on it).
        if not user.has_perm("loaders.approve_loaderversion"):
            return 0
        return selectors.versions_awaiting_approval(user=user).count()

    return {"pending_approvals_count": SimpleLazyObject(count)}
