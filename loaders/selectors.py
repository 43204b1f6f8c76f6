"""Reads of the loader registry, shaped so that list pages cost a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from loaders.models import OPEN_STATES, Loader, LoaderVersion, Tag, Team, VersionState


def _flags(queryset: QuerySet[Loader]) -> QuerySet[Loader]:
    # alias(), not annotate(): computed only when a filter or ordering uses them,
    # so a plain page never scans the versions table for them.
    return queryset.alias(
        has_pending=Exists(LoaderVersion.objects.filter(loader=OuterRef("pk"), state=VersionState.PENDING_APPROVAL)),
        has_active=Exists(LoaderVersion.objects.filter(loader=OuterRef("pk"), state=VersionState.ACTIVE)),
    )


def loader_search(queryset: QuerySet[Loader], search: str, exclude: Iterable[str] = ()) -> QuerySet[Loader]:
    """Substring match on code, name, owner name, or exact tag name — no join fan-out, no DISTINCT.

    ``exclude`` names Loader fields the searcher may not see (field protection):
    they are not searched, so results cannot reveal them.
    """
    if not search:
        return queryset
    exclude = set(exclude)
    condition = Q(loader_code__icontains=search)
    if "name" not in exclude:
        condition |= Q(name__icontains=search)
    if "owner" not in exclude:
        condition |= Q(owner__name__icontains=search)
    if "tags" not in exclude:
        condition |= Exists(Tag.objects.filter(loaders=OuterRef("pk"), name=search.lower()))
    return queryset.filter(condition)


def loader_list(*, search: str = "", exclude: Iterable[str] = ()) -> QuerySet[Loader]:
    """Loaders for list pages: owner, tags and a lean copy of the ACTIVE + open versions.

    Whatever the page size, a page costs the same queries: the loaders, their
    tags, their current versions, plus the count. ``has_pending`` / ``has_active``
    are available to filter and order on in SQL.
    """
    current = (
        LoaderVersion.objects.filter(state__in=[VersionState.ACTIVE, *OPEN_STATES])
        .only("id", "loader_id", "number", "state", "created_at", "submitted_at", "decided_at")
        .order_by("-number")
    )
    queryset = Loader.objects.select_related("owner").prefetch_related(
        "tags", Prefetch("versions", queryset=current, to_attr="current_versions")
    )
    return loader_search(_flags(queryset), search, exclude)


def loader_detail_list() -> QuerySet[Loader]:
    """Like loader_list, with full versions (users, every contract field) for detail pages."""
    current = (
        LoaderVersion.objects.filter(state__in=[VersionState.ACTIVE, *OPEN_STATES])
        .select_related("created_by", "submitted_by", "decided_by", "based_on")
        .order_by("-number")
    )
    queryset = Loader.objects.select_related("owner").prefetch_related(
        "tags", Prefetch("versions", queryset=current, to_attr="current_versions")
    )
    return _flags(queryset)


def loader_get(*, loader_code: str) -> Loader:
    return loader_detail_list().get(loader_code=loader_code)


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


def version_active_differences(*, version: LoaderVersion) -> tuple[LoaderVersion | None, list[str]]:
    """The loader's ACTIVE version and the contract fields in which ``version`` differs from it
    (every field when there is no active version yet: a first version is all new)."""
    active = (
        LoaderVersion.objects.filter(loader_id=version.loader_id, state=VersionState.ACTIVE)
        .exclude(pk=version.pk)
        .first()
    )
    if active is None:
        return None, list(LoaderVersion.CONTRACT_FIELDS)
    return active, [f for f in LoaderVersion.CONTRACT_FIELDS if getattr(active, f) != getattr(version, f)]


def teams_by_slug(slugs: Iterable[str]) -> dict[str, Team]:
    """The teams named by ``slugs``, by slug, in one query; an unknown slug is simply absent."""
    return {team.slug: team for team in Team.objects.filter(slug__in=set(slugs))}


def tags_by_name(names: Iterable[str]) -> dict[str, Tag]:
    """The tags named by ``names``, by name, in one query; an unknown name is simply absent."""
    return {tag.name: tag for tag in Tag.objects.filter(name__in=set(names))}


def team_by_slug(value: Team | str | None) -> Team | None:
    """``value`` as a team: a Team (or None) as it is, a slug looked up; None for an unknown slug."""
    if value is None or isinstance(value, Team):
        return value
    return teams_by_slug([str(value)]).get(str(value))


def tag_by_name(value: Tag | str | None) -> Tag | None:
    """``value`` as a tag: a Tag (or None) as it is, a name looked up; None for an unknown name."""
    if value is None or isinstance(value, Tag):
        return value
    return tags_by_name([str(value)]).get(str(value))


def team_named(value: Team | str | None, field: str, errors: dict[str, list[str]]) -> Team | None:
    """``team_by_slug`` for a service checking input: an unknown slug is reported on ``field``."""
    team = team_by_slug(value)
    if value is not None and team is None:
        errors[field] = [f"Unknown team {value!r}."]
    return team


def tag_named(value: Tag | str | None, field: str, errors: dict[str, list[str]]) -> Tag | None:
    """``tag_by_name`` for a service checking input: an unknown name is reported on ``field``."""
    tag = tag_by_name(value)
    if value is not None and tag is None:
        errors[field] = [f"Unknown tag {value!r}."]
    return tag
