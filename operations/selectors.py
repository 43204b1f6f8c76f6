"""Reads for the operations pages: every loader's health, the fleet's figures, one loader's page.

Rules kept here and nowhere else:

- a loader's health is one of ``Health`` (a word and a colour), decided by ``_health_decide``
  from its ACTIVE version's schedule, its latest run and its last success;
- the overview costs a fixed number of queries whatever the number of loaders: every per-loader
  figure comes from one aggregate or one correlated subquery over the filtered set, never a query
  per loader (``tests/operations`` counts them for 10 and 50 loaders);
- what a role may not see stays unseen: HIDDEN loader fields (name, team, tags, paused) and HIDDEN
  contract fields (schedule, limits) are left out of tiles, filters, contract and chart bands,
  MASKED ones show masked, secrets never.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from etl_monitor.errors import InvalidInput
from etl_monitor.protection import FieldPolicy, policy_for
from incidents.models import ACTIVE_STATUSES, Incident
from loaders.models import Loader, LoaderVersion, Severity, Tag, Team, VersionState
from loaders.schedule import ScheduleClock
from signals_app.models import IngestToken, Run, RunStatus, Signal

PAGE_SIZE = 120  # tiles per overview page; the most urgent come first
SPARK_POINTS = 20  # runs in a tile's sparkline
SPARK_DAYS = 30  # how far back a sparkline looks for those runs
CHART_DAYS = 30
RECENT_RUNS = 20
RECENT_INCIDENTS = 10
TOP_FAILED = 5
# A run a minute past its slot is not "late" yet: jobs start a few seconds after the minute.
LATE_AFTER = dt.timedelta(minutes=1)
FAILED_RUN = (RunStatus.FAILED, RunStatus.TIMED_OUT)


class Health(models.TextChoices):
    """A loader's health, most urgent first (the overview sorts by this order)."""

    FAILED = "failed", "Failed"
    MISSED = "missed", "Missed"
    LATE = "late", "Late"
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    PAUSED = "paused", "Paused"
    NONE = "none", "No active version"


URGENCY = {health: order for order, health in enumerate(Health)}


@dataclass(frozen=True)
class OverviewFilters:
    """The overview's GET filters (they are in the URL, so a reload or a shared link keeps them)."""

    team: str = ""
    tag: str = ""
    status: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> OverviewFilters:
        """Read the filters; refuse an unknown status or page, naming the field."""
        errors: dict[str, list[str]] = {}
        status = (query.get("status") or "").strip().lower()
        if status and status not in Health.values:
            errors["status"] = [f"Unknown status {status!r}; choose one of {', '.join(Health.values)}."]
        raw_page = (query.get("page") or "1").strip()
        page = int(raw_page) if raw_page.isdigit() and int(raw_page) > 0 else 0
        if not page:
            errors["page"] = ["A page is a whole number from 1."]
        if errors:
            raise InvalidInput(errors)
        return cls(
            team=(query.get("team") or "").strip(), tag=(query.get("tag") or "").strip(), status=status, page=page
        )

    def query(self, **changes: Any) -> str:
        """The query string of these filters with ``changes`` (empty values dropped; page reset)."""
        from urllib.parse import urlencode

        values = {"team": self.team, "tag": self.tag, "status": self.status, "page": ""} | changes
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 1)})


@dataclass
class LoaderHealth:
    """One tile of the overview (and the header of a loader's page)."""

    loader_id: int
    code: str
    name: str | None  # None: HIDDEN for this user
    team: str | None
    team_id: int | None
    tags: list[str] | None
    status: Health
    reason: str
    last_run: dict[str, Any] | None
    last_success_at: dt.datetime | None
    next_run_at: dt.datetime | None  # None: no schedule, or the schedule is HIDDEN
    timezone_name: str
    open_incidents: int
    spark: dict[str, list[Any]] = field(default_factory=dict)
    url: str = ""  # the loader's page, set by the view

    @property
    def status_label(self) -> str:
        return self.status.label

    @property
    def next_run_local(self) -> dt.datetime | None:
        if self.next_run_at is None:
            return None
        return self.next_run_at.astimezone(zoneinfo.ZoneInfo(self.timezone_name or "UTC"))


@dataclass
class Overview:
    tiles: list[LoaderHealth]
    counts: dict[str, int]  # status → loaders, of the team/tag selection
    total: int  # loaders shown after every filter
    page: int
    pages: int
    summary: dict[str, Any]
    teams: list[dict[str, str]] | None  # None: the owner field is HIDDEN for this user
    tags: list[str] | None


def _visible(policy: FieldPolicy, name: str) -> bool:
    """A value the user may read in clear: neither HIDDEN nor MASKED."""
    return policy.level(name) not in ("HIDDEN", "MASKED")


def _loaders_selected(
    policy: FieldPolicy, filters: OverviewFilters, teams: list[dict[str, str]] | None, tags: list[str] | None
) -> QuerySet[Loader]:
    """The loaders of the team and tag filters, checked against the lists the page offers (read
    anyway for its menus, so a filter costs no query of its own)."""
    errors: dict[str, list[str]] = {}
    loaders = Loader.objects.all()
    if filters.team:
        if teams is None:
            errors["team"] = ["Loader teams are hidden from your role; this filter is not available."]
        elif filters.team not in {team["slug"] for team in teams}:
            errors["team"] = [f"No team {filters.team!r}."]
        else:
            loaders = loaders.filter(owner__slug=filters.team)
    if filters.tag:
        if tags is None:
            errors["tag"] = ["Loader tags are hidden from your role; this filter is not available."]
        elif filters.tag not in tags:
            errors["tag"] = [f"No tag {filters.tag!r}."]
        else:
            loaders = loaders.filter(tags__name=filters.tag)
    if errors:
        raise InvalidInput(errors)
    return loaders


def _healths(
    loaders: QuerySet[Loader], *, user: Any, now: dt.datetime, policy: FieldPolicy | None = None
) -> list[LoaderHealth]:
    """The health of every loader in ``loaders``: five queries, whatever their number."""
    policy = policy or policy_for(user, Loader)
    contract = policy_for(user, LoaderVersion)
    last_run = Run.objects.filter(loader=OuterRef("pk")).order_by("-started_at", "-id").values("id")[:1]
    last_success = (
        Run.objects.filter(loader=OuterRef("pk"), status=RunStatus.SUCCEEDED)
        .order_by("-started_at", "-id")
        .values("finished_at")[:1]
    )
    rows = list(
        loaders.annotate(last_run_id=Subquery(last_run), last_success_at=Subquery(last_success)).values(
            "pk", "loader_code", "name", "is_paused", "owner_id", "owner__name", "last_run_id", "last_success_at"
        )
    )
    ids = loaders.values("pk")
    versions = {
        v["loader_id"]: v
        for v in LoaderVersion.objects.filter(state=VersionState.ACTIVE, loader__in=ids).values(
            "loader_id", "schedule_cron", "schedule_timezone", "grace_minutes", "freshness_sla_minutes", "decided_at"
        )
    }
    runs = {
        r["id"]: r
        for r in Run.objects.filter(pk__in=[r["last_run_id"] for r in rows if r["last_run_id"]]).values(
            "id", "status", "started_at", "finished_at", "duration_seconds", "rows_written"
        )
    }
    open_incidents = dict(
        Incident.objects.filter(status__in=ACTIVE_STATUSES, loader__in=ids)
        .values("loader_id")
        .annotate(n=Count("id"))
        .values_list("loader_id", "n")
    )
    tags: dict[int, list[str]] | None = None
    if _visible(policy, "tags"):
        tags = defaultdict(list)
        for loader_id, name in (
            Loader.tags.through.objects.filter(loader__in=ids)
            .order_by("tag__name")
            .values_list("loader_id", "tag__name")
        ):
            tags[loader_id].append(name)

    clock = ScheduleClock()
    schedule_visible = _visible(contract, "schedule_cron") and _visible(contract, "schedule_timezone")
    pause_visible = _visible(policy, "is_paused")
    result = []
    for row in rows:
        version = versions.get(row["pk"])
        run = runs.get(row["last_run_id"])
        status, reason = _health_decide(
            paused=row["is_paused"] and pause_visible,
            version=version,
            run=run,
            last_success_at=row["last_success_at"],
            now=now,
            clock=clock,
        )
        next_run = None
        if version and schedule_visible and status not in (Health.PAUSED, Health.NONE):
            next_run = clock.next(version["schedule_cron"], version["schedule_timezone"], now)
        result.append(
            LoaderHealth(
                loader_id=row["pk"],
                code=row["loader_code"],
                name=row["name"] if _visible(policy, "name") else None,
                team=row["owner__name"] if _visible(policy, "owner") else None,
                team_id=row["owner_id"] if _visible(policy, "owner") else None,
                tags=tags.get(row["pk"], []) if tags is not None else None,
                status=status,
                reason=reason,
                last_run=run,
                last_success_at=row["last_success_at"],
                next_run_at=next_run,
                timezone_name=version["schedule_timezone"] if version and schedule_visible else "UTC",
                open_incidents=open_incidents.get(row["pk"], 0),
            )
        )
    return result


def _local(moment: dt.datetime, timezone_name: str) -> str:
    try:
        zone = zoneinfo.ZoneInfo(timezone_name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%a %d %b %H:%M %Z")


def _health_decide(
    *,
    paused: bool,
    version: Mapping[str, Any] | None,
    run: Mapping[str, Any] | None,
    last_success_at: dt.datetime | None,
    now: dt.datetime,
    clock: ScheduleClock,
) -> tuple[Health, str]:
    """A loader's health and the sentence that says why.

    In order: paused; no ACTIVE version (nothing is monitored); a run in progress; the latest
    run failed; a scheduled run did not start within its grace (missed); a scheduled run is
    overdue but within its grace, or the data is older than the freshness SLA (late); else OK.
    A slot from before the version was approved is not this version's to miss."""
    if paused:
        return Health.PAUSED, "Paused: not monitored."
    if version is None:
        return Health.NONE, "No approved version yet: not monitored."
    if run is not None and run["status"] == RunStatus.RUNNING:
        return Health.RUNNING, "A run is in progress."
    if run is not None and run["status"] in FAILED_RUN:
        word = "timed out" if run["status"] == RunStatus.TIMED_OUT else "failed"
        return Health.FAILED, f"The last run {word}."
    started = run["started_at"] if run is not None else None
    cron, zone_name = version["schedule_cron"], version["schedule_timezone"]
    approved = version["decided_at"]

    def unmet(slot: Any) -> bool:
        if slot is None or (approved is not None and slot.at < approved):
            return False
        return started is None or started < slot.at - slot.tolerance()

    grace = dt.timedelta(minutes=version["grace_minutes"] or 0)
    due = clock.previous(cron, zone_name, now - grace)
    if unmet(due):
        return (
            Health.MISSED,
            f"The run due {_local(due.at, zone_name)} did not start within {version['grace_minutes']} min.",
        )
    current = clock.previous(cron, zone_name, now - LATE_AFTER)
    if unmet(current):
        return Health.LATE, f"The run due {_local(current.at, zone_name)} has not started yet."
    sla = version["freshness_sla_minutes"]
    if sla and last_success_at is not None and now - last_success_at > dt.timedelta(minutes=sla):
        return Health.LATE, f"The data is older than its freshness limit of {sla} min."
    if run is None:
        return Health.OK, "No run yet; none was due." if cron else "No run yet."
    return Health.OK, "The last run succeeded."


def _sparks(loader_ids: list[int], now: dt.datetime) -> dict[int, dict[str, list[Any]]]:
    """The last SPARK_POINTS finished runs of each loader, in one query.

    On PostgreSQL a LATERAL join reads each loader's newest runs straight from the
    (loader, -started_at) index: 20 rows per loader, where the windowed query (the portable
    form, kept for SQLite) ranks every run of 30 days first (≈ 2,900 for a 15-minute loader)."""
    if not loader_ids:
        return {}
    since = now - dt.timedelta(days=SPARK_DAYS)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT r.loader_id, r.started_at, r.duration_seconds, r.rows_written
                FROM unnest(%s::int[]) AS l(id)
                CROSS JOIN LATERAL (
                    SELECT loader_id, started_at, duration_seconds, rows_written
                    FROM signals_app_run
                    WHERE loader_id = l.id AND started_at >= %s AND status <> %s
                    ORDER BY started_at DESC
                    LIMIT %s
                ) AS r
                """,
                [loader_ids, since, RunStatus.RUNNING.value, SPARK_POINTS],
            )
            rows = [
                dict(zip(("loader_id", "started_at", "duration_seconds", "rows_written"), r, strict=True))
                for r in cursor.fetchall()
            ]
    else:
        rows = list(
            Run.objects.filter(loader_id__in=loader_ids, started_at__gte=since)
            .exclude(status=RunStatus.RUNNING)
            .annotate(rank=Window(RowNumber(), partition_by=[F("loader_id")], order_by=[F("started_at").desc()]))
            .filter(rank__lte=SPARK_POINTS)
            .values("loader_id", "started_at", "duration_seconds", "rows_written")
        )
    sparks: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"t": [], "duration": [], "rows": []})
    for run in sorted(rows, key=lambda r: r["started_at"]):
        spark = sparks[run["loader_id"]]
        spark["t"].append(int(run["started_at"].timestamp()))
        spark["duration"].append(run["duration_seconds"])
        spark["rows"].append(run["rows_written"])
    return sparks


def _summary(loaders: QuerySet[Loader] | None, now: dt.datetime) -> dict[str, Any]:
    """The fleet's figures: success rate and failures over 24 h, open incidents by severity,
    signals ingested in the last hour. ``loaders`` narrows them to a team's or tag's loaders."""
    day_ago = now - dt.timedelta(hours=24)
    runs = Run.objects.filter(started_at__gte=day_ago)
    incidents = Incident.objects.filter(status__in=ACTIVE_STATUSES)
    signals = Signal.objects.filter(captured_at__gte=now - dt.timedelta(hours=1), captured_at__lte=now)
    if loaders is not None:
        ids = loaders.values("pk")
        runs, incidents, signals = (
            runs.filter(loader__in=ids),
            incidents.filter(loader__in=ids),
            signals.filter(loader__in=ids),
        )
    # Listing the finished statuses (not "not RUNNING") lets PostgreSQL read the (status, started_at) index.
    finished = runs.filter(status__in=[RunStatus.SUCCEEDED, *FAILED_RUN]).aggregate(
        done=Count("id"), ok=Count("id", filter=Q(status=RunStatus.SUCCEEDED))
    )
    by_severity = dict(incidents.values("severity").annotate(n=Count("id")).values_list("severity", "n"))
    top_failed = list(
        runs.filter(status__in=FAILED_RUN)
        .values("loader_id", "loader__loader_code")
        .annotate(failures=Count("id"))
        .order_by("-failures", "loader__loader_code")[:TOP_FAILED]
    )
    return {
        "runs_finished": finished["done"],
        "runs_succeeded": finished["ok"],
        "success_rate": round(100.0 * finished["ok"] / finished["done"], 1) if finished["done"] else None,
        "incidents_by_severity": [(s.value, s.label, by_severity.get(s.value, 0)) for s in Severity],
        "incidents_open": sum(by_severity.values()),
        "top_failed": [
            {"loader_id": r["loader_id"], "code": r["loader__loader_code"], "failures": r["failures"]}
            for r in top_failed
        ],
        "signals_last_hour": signals.count(),
    }


def overview_read(*, user: Any, filters: OverviewFilters, now: dt.datetime | None = None) -> Overview:
    """Every selected loader's health, most urgent first, a page of tiles, and the fleet's figures.

    Raises ``InvalidInput`` naming the filter for an unknown team or tag, or one on a field the
    user's role may not see."""
    now = now or timezone.now()
    policy = policy_for(user, Loader)
    teams = list(Team.objects.values("slug", "name")) if _visible(policy, "owner") else None
    tags = list(Tag.objects.values_list("name", flat=True)) if _visible(policy, "tags") else None
    loaders = _loaders_selected(policy, filters, teams, tags)
    healths = _healths(loaders, user=user, now=now, policy=policy)
    counts = {h.value: 0 for h in Health}
    for health in healths:
        counts[health.status] += 1
    shown = [h for h in healths if not filters.status or h.status == filters.status]
    shown.sort(key=lambda h: (URGENCY[h.status], h.code))
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    page = min(filters.page, pages)
    tiles = shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    sparks = _sparks([t.loader_id for t in tiles], now)
    for tile in tiles:
        tile.spark = sparks.get(tile.loader_id, {"t": [], "duration": [], "rows": []})
    return Overview(
        tiles=tiles,
        counts=counts,
        total=len(shown),
        page=page,
        pages=pages,
        summary=_summary(loaders if (filters.team or filters.tag) else None, now),
        teams=teams,
        tags=tags,
    )


@dataclass
class FleetState:
    """What ``/metrics`` reports as state, read at scrape time (operations/metrics.py)."""

    healths: list[LoaderHealth]  # every loader, as the system sees it (no role's exemption)
    incidents_open: dict[tuple[str, str], int]  # (severity, status) → active incidents
    runs_24h: dict[tuple[str, str], int]  # (loader_code, status) → finished runs started in 24 h


def fleet_state_read(*, now: dt.datetime | None = None) -> FleetState:
    """Every loader's health, the active incidents by severity and status, and the finished runs
    of the last 24 h by loader and result: a fixed number of queries whatever the fleet's size.

    Read as the system (``user=None``): a field HIDDEN from anyone is left out, as on a
    notification, because a scrape has no user whose exemption could apply."""
    now = now or timezone.now()
    healths = _healths(Loader.objects.all(), user=None, now=now)
    incidents = {
        (row["severity"], row["status"]): row["n"]
        for row in Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .values("severity", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    # The overview's 24 h window (runs started since, finished now), so the page and a panel agree.
    runs = {
        (row["loader__loader_code"], row["status"]): row["n"]
        for row in Run.objects.filter(
            started_at__gte=now - dt.timedelta(hours=24), status__in=[RunStatus.SUCCEEDED, *FAILED_RUN]
        )
        .values("loader__loader_code", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    return FleetState(healths=healths, incidents_open=incidents, runs_24h=runs)


# --- one loader ----------------------------------------------------------------------------


def loader_health(*, user: Any, loader: Loader, now: dt.datetime | None = None) -> LoaderHealth:
    return _healths(Loader.objects.filter(pk=loader.pk), user=user, now=now or timezone.now())[0]


def loader_contract(*, user: Any, loader: Loader) -> list[tuple[str, Any]] | None:
    """The ACTIVE contract as (label, value) rows this user may see; None without an ACTIVE version.
    HIDDEN fields are left out, MASKED and secret ones show masked."""
    version = loader.active_version
    if version is None:
        return None
    policy = policy_for(user, LoaderVersion)
    rows = [
        (
            "Version",
            f"v{version.number}, approved {version.decided_at:%Y-%m-%d %H:%M} UTC"
            if version.decided_at
            else f"v{version.number}",
        )
    ]
    for name in LoaderVersion.CONTRACT_FIELDS:
        if policy.level(name) == "HIDDEN":
            continue
        model_field = LoaderVersion._meta.get_field(name)
        value = getattr(version, name)
        if getattr(model_field, "choices", None) and value and policy.level(name) is None:
            value = getattr(version, f"get_{name}_display")()
        rows.append((str(model_field.verbose_name).capitalize(), policy.display(name, value)))
    return rows


def loader_recent_runs(*, loader: Loader) -> list[Run]:
    return list(Run.objects.filter(loader=loader).order_by("-started_at", "-id")[:RECENT_RUNS])


def loader_incidents(*, loader: Loader, now: dt.datetime | None = None) -> dict[str, list[Incident]]:
    """The loader's open incidents, and those that ended in the last CHART_DAYS days."""
    now = now or timezone.now()
    incidents = Incident.objects.filter(loader=loader).order_by("-last_seen")
    return {
        "open": list(incidents.filter(status__in=ACTIVE_STATUSES)),
        "recent": list(
            incidents.exclude(status__in=ACTIVE_STATUSES).filter(last_seen__gte=now - dt.timedelta(days=CHART_DAYS))[
                :RECENT_INCIDENTS
            ]
        ),
    }


def loader_tokens(*, loader: Loader) -> list[IngestToken]:
    """The loader's tokens that still work (only their prefix: the secret is never stored)."""
    return list(IngestToken.objects.filter(loader=loader, revoked_at__isnull=True).order_by("kind", "-created_at"))


def loader_chart_data(*, user: Any, loader: Loader, now: dt.datetime | None = None) -> dict[str, Any]:
    """Duration and rows of the loader's finished runs over CHART_DAYS days, the ACTIVE contract's
    expected range (only the limits the user may see) and the moments versions were approved.

    Times are Unix seconds, as uPlot reads them."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=CHART_DAYS)
    runs = list(
        Run.objects.filter(loader=loader, started_at__gte=since)
        .exclude(status=RunStatus.RUNNING)
        .order_by("started_at", "id")
        .values_list("started_at", "duration_seconds", "rows_written", "status")
    )
    policy = policy_for(user, LoaderVersion)
    version = loader.active_version

    def limit(name: str) -> Any:
        return getattr(version, name) if version is not None and _visible(policy, name) else None

    max_minutes = limit("max_duration_minutes")
    approvals = (
        LoaderVersion.objects.filter(loader=loader, decided_at__gte=since, decided_at__lte=now)
        .filter(state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED])
        .order_by("decided_at")
        .values_list("number", "decided_at")
    )
    return {
        "loader": loader.loader_code,
        "from": int(since.timestamp()),
        "to": int(now.timestamp()),
        "t": [int(r[0].timestamp()) for r in runs],
        "duration_seconds": [r[1] for r in runs],
        "rows_written": [r[2] for r in runs],
        "failed": [r[3] in FAILED_RUN for r in runs],
        "expected": {
            "duration_max_seconds": max_minutes * 60 if max_minutes is not None else None,
            "rows_min": limit("expected_rows_min"),
            "rows_max": limit("expected_rows_max"),
        },
        "approvals": [{"t": int(at.timestamp()), "label": f"v{number} approved"} for number, at in approvals],
    }
