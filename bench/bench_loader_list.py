"""Loader list at scale: the admin changelist and GET /api/v1/loaders/ over 10,000 loaders.

Issue (foundation): with 10,000 loaders, each with an ACTIVE version and a
version PENDING_APPROVAL, on PostgreSQL,

* the number of SQL queries of a list page does not grow with the rows on it;
* the server time of a page stays under 150 ms.

Method
------
Seed 10,000 loaders with ``bulk_create`` (20 teams, 30 tags, 1-3 tags per loader,
v1 ACTIVE + v2 PENDING_APPROVAL each, most versions with an encrypted
connection password). Then request each scenario in-process with
``django.test.Client`` (session of a superuser for the admin, of a "Viewer" for
the API): 3 warm-up requests each, then ``ROUNDS`` rounds in which every scenario
and baseline is requested once (interleaved, so machine noise hits all of them
alike). Server time = ``time.perf_counter()`` around ``client.get`` (full Django
stack: middleware, view, template/JSON rendering; no network). Queries are
captured with ``CaptureQueriesContext`` on every timed request.

Query constancy is shown two ways: the same page size at different offsets
(first, middle, last page) and different numbers of rows per page (1, 10, 50
rows via a search on the loader code), which must all cost the same number of
queries.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import TimedScenario
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from etl_monitor.roles import Role
from loaders.models import Loader, LoaderVersion, Severity, Tag, Team, VersionState

N_LOADERS = 10_000
N_TEAMS = 20
N_TAGS = 30
WARMUPS = 3
ROUNDS = 20
TARGET_MS = 150.0
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "loader_list.md"

DOMAINS = ["SALES", "FIN", "HR", "CRM", "ERP", "MKT", "OPS", "LOG", "INV", "WEB"]
SOURCES = ["SAP ECC", "Salesforce", "Workday", "Oracle EBS", "Postgres OLTP", "S3 landing", "Kafka", "SFTP drop"]
TARGETS = ["dwh.staging", "dwh.core", "lake.raw", "lake.curated", "mart.finance", "mart.sales"]
CRONS = ["0 2 * * *", "30 3 * * *", "*/15 * * * *", "0 * * * *", "0 6 * * 1-5", ""]
ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "Asia/Singapore"]
SEVERITIES = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.MEDIUM, Severity.LOW]


# --- seeding --------------------------------------------------------------------------


def _code(i: int) -> str:
    return f"{DOMAINS[i % len(DOMAINS)]}-{i:05d}"


@transaction.atomic
def seed(rng: random.Random) -> dict[str, Any]:
    if Loader.objects.exclude(owner__slug="etl-monitor").exists():  # the seeded STATS loaders may stay
        raise RuntimeError(
            "bench_loader_list needs an empty loader registry; unset DATABASE_URL so bench/run.py "
            "uses its own freshly created etl_monitor_bench database."
        )
    now = timezone.now()

    admin = User.objects.create_superuser("bench-admin", "bench-admin@example.com", "bench-admin-password")
    viewer = User.objects.create_user("bench-viewer", "bench-viewer@example.com", "bench-viewer-password")
    viewer.groups.add(Group.objects.get(name=Role.VIEWER))
    editors = User.objects.bulk_create([User(username=f"editor{n}", email=f"editor{n}@example.com") for n in range(8)])
    approvers = User.objects.bulk_create(
        [User(username=f"approver{n}", email=f"approver{n}@example.com") for n in range(4)]
    )

    teams = Team.objects.bulk_create(
        [
            Team(slug=f"team-{n:02d}", name=f"Team {chr(65 + n)} Data", email=f"team{n}@example.com")
            for n in range(N_TEAMS)
        ]
    )
    tags = Tag.objects.bulk_create([Tag(name=f"tag-{name}") for name in _tag_names()])

    loaders = []
    for i in range(N_LOADERS):
        created = now - dt.timedelta(days=rng.uniform(30, 900))
        loaders.append(
            Loader(
                loader_code=_code(i),
                name=f"{DOMAINS[i % len(DOMAINS)].title()} {rng.choice(['daily', 'hourly', 'weekly', 'intraday'])} "
                f"load {rng.choice(SOURCES)} to {rng.choice(TARGETS)}",
                owner=rng.choice(teams),
                is_paused=rng.random() < 0.05,
                first_activated_at=created + dt.timedelta(days=rng.uniform(1, 20)),
                created_by=rng.choice(editors),
            )
        )
    loaders = Loader.objects.bulk_create(loaders, batch_size=2000)
    Through = Loader.tags.through
    links = []
    for loader in loaders:
        for tag in rng.sample(tags, rng.randint(1, 3)):
            links.append(Through(loader_id=loader.pk, tag_id=tag.pk))
    Through.objects.bulk_create(links, batch_size=5000)

    def contract() -> dict[str, Any]:
        rows_min = rng.choice([None, rng.randint(0, 1000)])
        return {
            "description": "Loads the nightly extract into the warehouse; owners get paged on CRITICAL.",
            "source_system": rng.choice(SOURCES),
            "target": rng.choice(TARGETS),
            "schedule_cron": rng.choice(CRONS),
            "schedule_timezone": rng.choice(ZONES),
            "grace_minutes": rng.choice([5, 15, 30, 60]),
            "max_duration_minutes": rng.choice([None, 30, 60, 120]),
            "expected_rows_min": rows_min,
            "expected_rows_max": None if rows_min is None else rows_min + rng.randint(1000, 10**7),
            "freshness_sla_minutes": rng.choice([None, 60, 1440]),
            "default_severity": rng.choice(SEVERITIES),
            "notification_hint": f"#etl-{rng.choice(DOMAINS).lower()}",
            "connection_host": f"db{rng.randint(1, 40)}.internal",
            "connection_port": rng.choice([5432, 1521, 1433, None]),
            "connection_database": rng.choice(["prod", "reporting", "ods"]),
            "connection_user": "etl_reader",
            # Encrypted on save (Fernet); 80 % of loaders have a stored secret.
            "connection_password": f"s3cret-{rng.randint(0, 10**9)}" if rng.random() < 0.8 else "",
        }

    # FSMField(protected=True) only refuses assignment *after* __init__, so state= in the
    # constructor is allowed and bulk_create writes it as given.
    active = []
    for loader in loaders:
        submitted = loader.first_activated_at - dt.timedelta(hours=rng.uniform(1, 48))
        active.append(
            LoaderVersion(
                loader=loader,
                number=1,
                state=VersionState.ACTIVE,
                created_by=loader.created_by,
                submitted_by=loader.created_by,
                submitted_at=submitted,
                decided_by=rng.choice(approvers),
                decided_at=loader.first_activated_at,
                decision_comment="LGTM",
                **contract(),
            )
        )
    active = LoaderVersion.objects.bulk_create(active, batch_size=2000)
    pending = []
    for loader, v1 in zip(loaders, active, strict=True):
        data = {f: getattr(v1, f) for f in LoaderVersion.CONTRACT_FIELDS}
        data["grace_minutes"] = v1.grace_minutes + 5
        pending.append(
            LoaderVersion(
                loader=loader,
                number=2,
                state=VersionState.PENDING_APPROVAL,
                based_on=v1,
                created_by=rng.choice(editors),
                submitted_by=rng.choice(editors),
                submitted_at=now - dt.timedelta(hours=rng.uniform(1, 200)),
                **data,
            )
        )
    LoaderVersion.objects.bulk_create(pending, batch_size=2000)

    states = Counter(LoaderVersion.objects.exclude(loader__owner__slug="etl-monitor").values_list("state", flat=True))
    assert states == {VersionState.ACTIVE: N_LOADERS, VersionState.PENDING_APPROVAL: N_LOADERS}, states
    return {"admin": admin, "viewer": viewer, "tag_links": len(links)}


def _tag_names() -> list[str]:
    words = [
        "gdpr", "pii", "finance", "sales", "hr", "daily", "hourly", "critical", "legacy", "cloud",
        "sap", "crm", "erp", "marketing", "ops", "logistics", "inventory", "web", "batch", "stream",
        "tier1", "tier2", "tier3", "external", "internal", "audit", "sox", "reporting", "ml", "backfill",
    ]  # fmt: skip
    return words[:N_TAGS]


# --- measuring ------------------------------------------------------------------------


@dataclass
class Scenario(TimedScenario):
    group: str  # "admin", "api" or "baseline"
    label: str
    url: str | None = None  # None: an ORM-only baseline
    client: Client | None = None
    expect_rows: int | None = None
    rows_kind: str = ""  # "offset" or "rows": which constancy comparison it takes part in
    times: list[float] = field(default_factory=list)
    sql_times: list[float] = field(default_factory=list)
    query_counts: list[int] = field(default_factory=list)
    rows: int | None = None
    last_queries: list[dict[str, Any]] = field(default_factory=list)

    def run_once(self, record: bool) -> None:
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            if self.url is None:
                result = list(Loader.objects.all()[:50])
                rows = len(result)
            else:
                response = self.client.get(self.url)
                elapsed_inner = time.perf_counter() - t0
                if response.status_code != 200:
                    raise RuntimeError(f"{self.label}: GET {self.url} → {response.status_code}")
                rows = _count_rows(self.group, response)
            elapsed = time.perf_counter() - t0 if self.url is None else elapsed_inner
        self.rows = rows
        if record:
            self.times.append(elapsed * 1000)
            self.query_counts.append(len(ctx.captured_queries))
            self.sql_times.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
            self.last_queries = list(ctx.captured_queries)


def _count_rows(group: str, response: Any) -> int:
    if group == "api":
        return len(response.json()["results"])
    if group == "admin":
        # One action checkbox per result row in the changelist.
        return response.content.decode().count('name="_selected_action"')
    return 1


def _shape(sql: str) -> str:
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"\b\d+\b", "?", sql)
    return re.sub(r"\(\?(?:, \?)*\)", "(…)", sql)


def _query_table(scenario: Scenario, limit: int = 220) -> list[str]:
    lines = [
        f"Queries of `{scenario.label}` (`{scenario.url}`), last timed request:",
        "",
        "| # | ms | SQL |",
        "|---|---|---|",
    ]
    for n, q in enumerate(scenario.last_queries, 1):
        sql = q["sql"].replace("|", "\\|").replace("\n", " ")
        sql = sql if len(sql) <= limit else sql[:limit] + " …"
        lines.append(f"| {n} | {float(q['time']) * 1000:.1f} | `{sql}` |")
    repeated = [(s, c) for s, c in Counter(_shape(q["sql"]) for q in scenario.last_queries).items() if c > 1]
    if repeated:
        lines += ["", "Repeated query shapes (possible N+1):"]
        lines += [f"- {c} times: `{s[:limit]}`" for s, c in repeated]
    return lines


def _slowest_plan(scenario: Scenario) -> list[str]:
    """EXPLAIN ANALYZE of the slowest query of a scenario (for the results file)."""
    slowest = max(scenario.last_queries, key=lambda q: float(q["time"]))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE) " + slowest["sql"])
        plan = [row[0] for row in cursor.fetchall()]
    return [
        "",
        f"Slowest query of `{scenario.label}`, EXPLAIN ANALYZE:",
        "",
        "```sql",
        slowest["sql"],
        "```",
        "```",
        *plan,
        "```",
    ]


def main() -> list[str]:
    rng = random.Random(20240601)
    print(f"seeding {N_LOADERS:,} loaders (2 versions each) …", flush=True)
    t0 = time.perf_counter()
    users = seed(rng)
    seed_s = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"seeded in {seed_s:.1f} s: {Loader.objects.count():,} loaders, {LoaderVersion.objects.count():,} versions, "
        f"{users['tag_links']:,} tag links, {N_TEAMS} teams, {N_TAGS} tags",
        flush=True,
    )

    admin_client, api_client = Client(), Client()
    admin_client.force_login(users["admin"])
    api_client.force_login(users["viewer"])

    admin_url, api_url = "/admin/loaders/loader/", "/api/v1/loaders/"
    last_page = math.ceil(N_LOADERS / 50)
    s10 = "-0012"  # codes *-00120 … *-00129: 10 loaders
    s1 = "-00123"  # exactly one loader
    s50 = "-00"  # 1,000 loaders: a full page of 50
    scenarios = [
        Scenario("baseline", "ORM: list(Loader.objects.all()[:50])"),
        Scenario("baseline", "GET /healthz (request overhead)", "/healthz", admin_client),
        Scenario("api", "API detail (1 loader)", f"{api_url}{_code(123)}/", api_client),
        Scenario("admin", "admin page 1", f"{admin_url}?p=1", admin_client, 50, "offset"),
        Scenario("admin", "admin page 100", f"{admin_url}?p=100", admin_client, 50, "offset"),
        Scenario("admin", f"admin page {last_page} (last)", f"{admin_url}?p={last_page}", admin_client, 50, "offset"),
        Scenario("admin", "admin search, 50 rows", f"{admin_url}?q={s50}", admin_client, 50, "rows"),
        Scenario("admin", "admin search, 10 rows", f"{admin_url}?q={s10}", admin_client, 10, "rows"),
        Scenario("admin", "admin search, 1 row", f"{admin_url}?q={s1}", admin_client, 1, "rows"),
        Scenario("admin", "admin filter approval=pending", f"{admin_url}?approval=pending", admin_client, 50),
        Scenario("api", "API page 1", f"{api_url}?page=1", api_client, 50, "offset"),
        Scenario("api", "API page 100", f"{api_url}?page=100", api_client, 50, "offset"),
        Scenario("api", f"API page {last_page} (last)", f"{api_url}?page={last_page}", api_client, 50, "offset"),
        Scenario("api", "API search, 50 rows", f"{api_url}?search={s50}", api_client, 50, "rows"),
        Scenario("api", "API search, 10 rows", f"{api_url}?search={s10}", api_client, 10, "rows"),
        Scenario("api", "API search, 1 row", f"{api_url}?search={s1}", api_client, 1, "rows"),
        Scenario("api", "API filter state=pending", f"{api_url}?state=pending", api_client, 50),
    ]
    # The detail view is a reference point, not a list page: keep it out of the list checks.
    scenarios[2].group = "reference"

    t0 = time.perf_counter()
    for scenario in scenarios:
        for _ in range(WARMUPS):
            scenario.run_once(record=False)
    for _ in range(ROUNDS):
        for scenario in scenarios:
            scenario.run_once(record=True)
    measure_s = time.perf_counter() - t0

    missed: list[str] = []
    for s in scenarios:
        if s.expect_rows is not None and s.rows != s.expect_rows:
            missed.append(f"{s.label}: expected {s.expect_rows} rows on the page, got {s.rows}")

    orm_base = scenarios[0].median
    http_base = scenarios[1].median
    lines = [
        f"Loader list, {N_LOADERS:,} loaders (v1 ACTIVE + v2 PENDING_APPROVAL each), PostgreSQL "
        f"{connection.pg_version // 10000}; {WARMUPS} warm-ups, {ROUNDS} interleaved rounds; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; Python {sys.version.split()[0]}",
        "",
        "| scenario | rows | SQL queries | SQL ms (median) | server ms median | server ms p95 "
        "| x /healthz | x ORM 50 rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.label} | {s.rows} | {s.queries} | {statistics.median(s.sql_times):.1f} | {s.median:.1f} | "
            f"{s.p95:.1f} | {s.median / http_base:.1f} | {s.median / orm_base:.1f} |"
        )

    checks = ["", "| target | result |", "|---|---|"]
    for group in ("admin", "api"):
        members = [s for s in scenarios if s.group == group]
        for kind, what in (("offset", "first/middle/last page"), ("rows", "1 vs 10 vs 50 rows per page")):
            same = [s for s in members if s.rows_kind == kind]
            counts = {s.label: set(s.query_counts) for s in same}
            constant = len(set().union(*counts.values())) == 1
            figures = ", ".join(
                f"{s.rows} rows → {s.queries}" if kind == "rows" else f"{s.label}: {s.queries}" for s in same
            )
            checks.append(f"| {group}: queries constant across {what} | {'PASS' if constant else 'FAIL'} ({figures}) |")
            if not constant:
                missed.append(f"{group}: query count changes across {what}: {figures}")
        every = {q for s in members for q in s.query_counts}
        checks.append(
            f"| {group}: queries identical on every list page (pages, searches, filter) | "
            f"{'PASS' if len(every) == 1 else 'FAIL'} ({', '.join(str(q) for q in sorted(every))} queries) |"
        )
        if len(every) != 1:
            missed.append(f"{group}: query counts differ between list pages: {sorted(every)}")
        slowest = max(members, key=lambda s: s.median)
        too_slow = [s for s in members if s.median >= TARGET_MS]
        over = "; ".join(f"{s.label} {s.median:.1f} ms" for s in too_slow)
        checks.append(
            f"| {group}: median server time < {TARGET_MS:.0f} ms on every list page | "
            + (f"FAIL (over: {over})" if too_slow else "PASS")
            + f" (slowest: {slowest.label}, median {slowest.median:.1f} ms, p95 {slowest.p95:.1f} ms) |"
        )
        missed += [f"{group}: {s.label} median {s.median:.1f} ms >= {TARGET_MS:.0f} ms" for s in too_slow]
        over_p95 = [s.label for s in members if s.p95 >= TARGET_MS]
        if over_p95:
            checks.append(
                f"| {group}: p95 < {TARGET_MS:.0f} ms (informative, not a target) | over: {', '.join(over_p95)} |"
            )

    timing = [
        "",
        f"Seeding {seed_s:.1f} s; measuring {measure_s:.1f} s. Server time = perf_counter around "
        "django.test.Client.get (in-process, DEBUG=true, query logging on).",
    ]
    report = lines + checks + timing
    print("\n".join(report))

    by_label = {s.label: s for s in scenarios}
    detail = ["", "## Queries per page", ""]
    detail += [*_query_table(by_label["admin page 1"]), "", *_query_table(by_label["API page 1"])]
    plans: list[str] = []
    if missed:
        # Name the slow or growing view with its queries, so the report says where the time goes.
        for s in scenarios:
            if s.group in ("admin", "api") and (s.median >= TARGET_MS or any(s.label in m for m in missed)):
                detail += ["", *_query_table(s)]
                plans += _slowest_plan(s)
        print("\n".join(detail[2:]))

    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text("# Loader list benchmark\n\n" + "\n".join(report + detail + plans) + "\n")
    print(f"\nwritten to {RESULTS_FILE.relative_to(RESULTS_FILE.parents[2])}")
    return missed
