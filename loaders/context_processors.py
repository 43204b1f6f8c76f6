"""The admin header's "N waiting for your approval" link, for people who may approve."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from loaders import selectors


def pending_approvals(request: HttpRequest) -> dict[str, Any]:
    """``pending_approvals_count``: the versions this user could approve now. Lazy, so a page
    that does not show the header (an API answer, a download) costs no query."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and request.path.startswith("/admin/")):
        return {}
    if not user.has_perm("loaders.approve_loaderversion"):
        return {}
    return {
        "pending_approvals_count": SimpleLazyObject(lambda: selectors.versions_awaiting_approval(user=user).count())
    }
