"""Reads of the loader registry, shaped so that list pages cost a fixed number of queries."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from loaders.models import OPEN_STATES, Loader, LoaderVersion, VersionState


def loader_list(*, search: str = "") -> QuerySet[Loader]:
    """Loaders with owner, tags and their ACTIVE + open versions, prefetched.

    Whatever the page size, a page costs: the loaders, their tags, their current
    versions (three queries) plus the count. ``has_pending`` and ``has_active``
    are annotations so lists can filter and sort on them in SQL.
    """
    current = LoaderVersion.objects.filter(state__in=[VersionState.ACTIVE, *OPEN_STATES]).select_related(
        "created_by", "submitted_by", "decided_by"
    )
    queryset = (
        Loader.objects.select_related("owner")
        .prefetch_related("tags", Prefetch("versions", queryset=current, to_attr="current_versions"))
        .annotate(
            has_pending=Exists(
                LoaderVersion.objects.filter(loader=OuterRef("pk"), state=VersionState.PENDING_APPROVAL)
            ),
            has_active=Exists(LoaderVersion.objects.filter(loader=OuterRef("pk"), state=VersionState.ACTIVE)),
        )
    )
    if search:
        queryset = queryset.filter(
            Q(loader_code__icontains=search) | Q(name__icontains=search) | Q(owner__name__icontains=search)
        )
    return queryset


def loader_get(*, loader_code: str) -> Loader:
    return loader_list().get(loader_code=loader_code)


def loader_versions(*, loader: Loader) -> QuerySet[LoaderVersion]:
    return loader.versions.select_related("created_by", "submitted_by", "decided_by", "based_on").order_by("-number")


def versions_awaiting_approval(*, user: AbstractBaseUser) -> QuerySet[LoaderVersion]:
    """PENDING versions this user could approve (not ones they created or submitted).

    Editors of a draft are excluded at approval time by the service, which reads
    the full history; this list filters on the cheap columns only.
    """
    return (
        LoaderVersion.objects.filter(state=VersionState.PENDING_APPROVAL)
        .exclude(submitted_by=user)
        .exclude(created_by=user)
        .select_related("loader", "loader__owner", "submitted_by", "created_by")
        .order_by("submitted_at")
    )
