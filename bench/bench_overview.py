"""The operations overview and a loader's chart data at scale, on PostgreSQL.

Issue #15 (Performance): with 1,000 loaders and 10 million signals,

* the overview's server time ≤ 300 ms, with a query count independent of the number of loaders;
* the chart data of one loader over 30 days ≤ 200 ms;
* the overview fully drawn in a real browser ≤ 2 s (Navigation Timing read through Selenium).

Method
------
Seed 1,000 loaders (20 teams, 30 tags; 2 % without an ACTIVE version, 3 % paused) whose ACTIVE
schedules are every 15 minutes (10 %), hourly (30 %) or daily at 02:00 (60 %), in UTC. Their runs
over 30 days are written with ``INSERT … SELECT generate_series`` (one per slot, 3 % failed, the
latest slots skipped by some loaders so every health state occurs: ≈ 520,000 runs), then
``BENCH_OVERVIEW_SIGNALS`` (default 10,000,000) signals spread over the same 30 days with
``INSERT … SELECT generate_series`` into the day partitions, and 300 open incidents.

Server time: ``time.perf_counter()`` around ``django.test.Client.get`` as a Viewer (the full
Django stack, no network), ``WARMUPS`` warm-ups, then ``ROUNDS`` interleaved rounds of every
scenario and its baselines (``/healthz`` and ``/admin/models/``, the stock admin index, a trivial
admin page), so machine noise hits them alike. Queries are counted on every request. Query
constancy: the unfiltered overview (1,000 loaders) against a team's (≈ 50) and one status's.

Browser: this process serves the app on a local port (Django's ``LiveServerThread`` with the
static files handler, as the browser tests do); headless Chromium signs in with the Viewer's
session cookie and opens ``/admin/`` ``BROWSER_ROUNDS`` times. Fully drawn = the later of the load
event's end and the last sparkline drawn (``charts.js`` records it in ``window.opsLastDrawMs``),
both measured from navigation start.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import TimedScenario
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from etl_monitor.roles import Role, roles_sync
from incidents.models import Incident
from loaders.models import Loader, LoaderVersion, Severity, Tag, Team, VersionState
from signals_app.retention import signals_partitions_ensure

N_LOADERS = 1_000
N_TEAMS = 20
N_TAGS = 30
N_SIGNALS = int(os.environ.get("BENCH_OVERVIEW_SIGNALS", "10000000"))
N_INCIDENTS = 300
DAYS = 30
WARMUPS = 3
ROUNDS = 15
BROWSER_ROUNDS = 5
OVERVIEW_MS = 300.0
CHART_MS = 200.0
BROWSER_MS = 2000.0
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "overview.md"
SCHEDULES = (("*/15 * * * *", "15 minutes", 0.10), ("0 * * * *", "1 hour", 0.30), ("0 2 * * *", "1 day", 0.60))
REGISTRY_TABLES = (
    "signals_app_signal, signals_app_signalkey, signals_app_run, incidents_incident, incidents_incidentevent, "
    "loaders_loaderversion, loaders_historicalloaderversion, loaders_loader_tags, loaders_historicalloader_tags, "
    "loaders_loader, loaders_historicalloader"
)


def _truncate() -> None:
    """Start from (and leave) an empty registry: earlier benchmarks leave their loaders behind."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {REGISTRY_TABLES} CASCADE")
    Team.objects.filter(slug__startswith="ovw-team-").delete()
    Tag.objects.filter(name__startswith="ovw-").delete()
    User.objects.filter(username="bench-overview-viewer").delete()


@transaction.atomic
def _seed_registry(rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    teams = Team.objects.bulk_create(Team(slug=f"ovw-team-{n:02d}", name=f"Team {n:02d}") for n in range(N_TEAMS))
    tags = Tag.objects.bulk_create(Tag(name=f"ovw-tag-{n:02d}") for n in range(N_TAGS))
    loaders = Loader.objects.bulk_create(
        (
            Loader(
                loader_code=f"OVW-{i:04d}",
                name=f"Overview loader {i}",
                owner=teams[i % N_TEAMS],
                is_paused=rng.random() < 0.03,
                first_activated_at=now - dt.timedelta(days=60),
            )
            for i in range(N_LOADERS)
        ),
        batch_size=1000,
    )
    Through = Loader.tags.through
    Through.objects.bulk_create(
        (Through(loader_id=loader.pk, tag_id=tag.pk) for loader in loaders for tag in rng.sample(tags, 2)),
        batch_size=5000,
    )
    periods: dict[int, str] = {}
    versions = []
    for loader in loaders:
        if rng.random() < 0.02:
            continue  # no ACTIVE version yet: health "No active version"
        pick = rng.random()
        cron, period = SCHEDULES[-1][:2]
        for schedule, every, share in SCHEDULES:
            pick -= share
            if pick <= 0:
                cron, period = schedule, every
                break
        periods[loader.pk] = period
        versions.append(
            LoaderVersion(
                loader=loader,
                number=1,
                state=VersionState.ACTIVE,
                schedule_cron=cron,
                schedule_timezone="UTC",
                grace_minutes=rng.choice([5, 15, 30]),
                max_duration_minutes=rng.choice([None, 30, 60]),
                expected_rows_min=1000,
                expected_rows_max=50_000,
                freshness_sla_minutes=rng.choice([None, None, 1500]),
                default_severity=rng.choice(list(Severity)),
                decided_at=now - dt.timedelta(days=45),
            )
        )
    LoaderVersion.objects.bulk_create(versions, batch_size=1000)
    viewer = User.objects.create_user("bench-overview-viewer", is_staff=True)
    viewer.groups.add(Group.objects.get(name=Role.VIEWER))
    return {"viewer": viewer, "periods": periods, "loaders": loaders, "teams": teams}


def _seed_runs(periods: dict[int, str], now: dt.datetime, rng: random.Random) -> int:
    """One run per slot over DAYS days; 3 % failed; the last slot skipped by 5 % of loaders and
    failed by another 5 %, and 2 % still running, so the grid shows every state."""
    skip = {pk for pk in periods if rng.random() < 0.05}
    running = {pk for pk in periods if pk not in skip and rng.random() < 0.02}
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_periods (loader_id int, period interval, last_slot text)")
        rows = [
            (pk, period, "skip" if pk in skip else "running" if pk in running else "") for pk, period in periods.items()
        ]
        cursor.executemany("INSERT INTO bench_periods VALUES (%s, %s::interval, %s)", rows)
        cursor.execute(
            """
            WITH slots AS (
                SELECT p.loader_id, p.last_slot, s.t,
                       s.t = max(s.t) OVER (PARTITION BY p.loader_id) AS is_last
                FROM bench_periods p
                CROSS JOIN LATERAL generate_series(
                    date_trunc('day', %(now)s::timestamptz - %(days)s * interval '1 day')
                        + CASE WHEN p.period = interval '1 day' THEN interval '2 hours' ELSE interval '0' END,
                    %(now)s::timestamptz, p.period) AS s(t)
            )
            INSERT INTO signals_app_run (run_id, loader_id, status, started_at, finished_at, duration_seconds,
                rows_read, rows_written, rows_rejected, error_text, log_excerpt, correlation_id, source,
                loader_paused, no_active_version, created_at, updated_at)
            SELECT gen_random_uuid(), loader_id, st.status,
                   t + interval '10 seconds',
                   CASE WHEN st.status = 'RUNNING' THEN NULL
                        ELSE t + interval '10 seconds' + d.sec * interval '1 second' END,
                   CASE WHEN st.status = 'RUNNING' THEN NULL ELSE d.sec END,
                   d.rows, CASE WHEN st.status = 'SUCCEEDED' THEN d.rows END, 0,
                   CASE WHEN st.status = 'FAILED' THEN 'bench failure' ELSE '' END, '', '', 'API', false, false,
                   t, t
            FROM slots
            CROSS JOIN LATERAL (SELECT 30 + (random() * 600)::int AS sec, 1000 + (random() * 40000)::int AS rows) d
            CROSS JOIN LATERAL (SELECT CASE
                    WHEN is_last AND last_slot = 'running' THEN 'RUNNING'
                    WHEN random() < 0.03 THEN 'FAILED'
                    ELSE 'SUCCEEDED' END AS status) st
            WHERE NOT (is_last AND last_slot = 'skip')
            """,
            {"now": now, "days": DAYS},
        )
        count = cursor.rowcount
        cursor.execute("DROP TABLE bench_periods")
    return count


def _seed_signals(loader_ids: list[int], now: dt.datetime) -> None:
    """N_SIGNALS signals over DAYS days, round-robin over the loaders, into the day partitions."""
    signals_partitions_ensure(today=now.date(), days_before=DAYS + 1, days_ahead=2)
    chunk = 1_000_000
    with connection.cursor() as cursor:
        for start in range(0, N_SIGNALS, chunk):
            stop = min(start + chunk, N_SIGNALS)
            cursor.execute(
                """
                INSERT INTO signals_app_signal (loader_id, signal_key, signal_value, value_number,
                    validation_status, metric_type, metric_source, captured_at, received_at, correlation_id,
                    loader_paused, no_active_version)
                SELECT (%(ids)s::int[])[1 + g %% %(n)s], 'rows_loaded', (g %% 5000)::text, g %% 5000,
                       CASE WHEN g %% 50 = 0 THEN 'FAILED' ELSE 'SUCCESS' END, 'ROW_COUNT', 'ETL',
                       %(now)s::timestamptz - ((g::bigint * %(span)s) / %(total)s) * interval '1 second',
                       %(now)s::timestamptz - ((g::bigint * %(span)s) / %(total)s) * interval '1 second',
                       '', false, false
                FROM generate_series(%(start)s, %(stop)s - 1) AS g
                """,
                {
                    "ids": loader_ids,
                    "n": len(loader_ids),
                    "now": now,
                    "span": DAYS * 86400,
                    "total": N_SIGNALS,
                    "start": start,
                    "stop": stop,
                },
            )
            print(f"  signals: {stop:,} of {N_SIGNALS:,}", flush=True)


def _seed_incidents(loaders: list[Loader], now: dt.datetime, rng: random.Random) -> None:
    Incident.objects.bulk_create(
        Incident(
            title=f"{loader.loader_code} run failed",
            severity=rng.choice(list(Severity)),
            category="TRANSACTION",
            loader=loader,
            subject=loader.loader_code,
            fingerprint=f"bench-overview-{loader.pk}",
            first_seen=now - dt.timedelta(hours=2),
            last_seen=now,
        )
        for loader in rng.sample(loaders, N_INCIDENTS)
    )


# --- measuring ------------------------------------------------------------------------


@dataclass
class Scenario(TimedScenario):
    group: str  # "overview", "chart", "reference" or "baseline"
    label: str
    url: str
    tiles: int | None = None
    times: list[float] = field(default_factory=list)
    query_counts: list[int] = field(default_factory=list)

    def run_once(self, client: Client, record: bool) -> None:
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(self.url)
            elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{self.label}: GET {self.url} → {response.status_code}")
        if self.group == "overview":
            self.tiles = response.content.decode().count('class="ops-card ops-tile')
        if record:
            self.times.append(elapsed)
            self.query_counts.append(len(ctx.captured_queries))


def _browser_drawn(client: Client) -> tuple[list[float], list[float]] | str:
    """Navigation Timing of /admin/ in headless Chromium: (load event ends, fully drawn) in ms."""
    chromium, driver_path = "/usr/bin/chromium", "/usr/bin/chromedriver"
    if not (shutil.which(chromium) and shutil.which(driver_path)):
        return "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, connections_override=None, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1366,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    base = f"http://127.0.0.1:{server.port}"
    loads, drawn = [], []
    try:
        driver.get(base + "/healthz")
        driver.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})
        for _ in range(BROWSER_ROUNDS + 1):  # the first round warms the browser's cache of static files
            driver.get(base + "/admin/")
            timing = driver.execute_script(
                "return new Promise(done => { const read = () => { const n = performance.getEntriesByType("
                "'navigation')[0]; if (n.loadEventEnd > 0) { setTimeout(() => done([n.loadEventEnd - n.startTime,"
                " window.opsLastDrawMs || 0, document.querySelectorAll('.ops-spark canvas').length]), 300); }"
                " else { setTimeout(read, 20); } }; read(); });"
            )
            loads.append(float(timing[0]))
            drawn.append(max(float(timing[0]), float(timing[1])))
            if not timing[2]:
                return "the overview drew no sparkline in the browser"
    finally:
        driver.quit()
        server.terminate()
    return loads[1:], drawn[1:]


def main() -> list[str]:
    rng = random.Random(20261203)
    roles_sync()
    _truncate()
    now = timezone.now()
    t0 = time.perf_counter()
    seeded = _seed_registry(rng, now)
    run_count = _seed_runs(seeded["periods"], now, rng)
    print(f"seeded {N_LOADERS:,} loaders and {run_count:,} runs in {time.perf_counter() - t0:.1f} s", flush=True)
    t1 = time.perf_counter()
    _seed_signals([loader.pk for loader in seeded["loaders"]], now)
    signals_s = time.perf_counter() - t1
    _seed_incidents(seeded["loaders"], now, rng)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    seed_s = time.perf_counter() - t0
    signal_count = N_SIGNALS
    print(f"seeded {signal_count:,} signals in {signals_s:.1f} s; all seeding {seed_s:.1f} s", flush=True)
    try:
        return _measure(seeded, run_count, signal_count, seed_s, signals_s)
    finally:
        if not os.environ.get("BENCH_OVERVIEW_KEEP"):  # keep the data to look into a slow query
            _truncate()


def _measure(seeded: dict[str, Any], run_count: int, signal_count: int, seed_s: float, signals_s: float) -> list[str]:
    client = Client()
    client.force_login(seeded["viewer"])
    frequent = next(pk for pk, period in seeded["periods"].items() if period == "15 minutes")
    code = Loader.objects.get(pk=frequent).loader_code
    team = seeded["teams"][3].slug
    scenarios = [
        Scenario("baseline", "GET /healthz (request overhead)", "/healthz"),
        Scenario("baseline", "stock admin index /admin/models/ (trivial admin page)", "/admin/models/"),
        Scenario("overview", "overview, 1,000 loaders", "/admin/"),
        Scenario("overview", "overview, one team (50 loaders)", f"/admin/?team={team}"),
        Scenario("overview", "overview, status=failed", "/admin/?status=failed"),
        Scenario(
            "chart", f"chart data, 30 days of a 15-minute loader ({code})", f"/admin/ops/loaders/{code}/chart.json"
        ),
        Scenario("reference", f"loader page ({code})", f"/admin/ops/loaders/{code}/"),
    ]
    for scenario in scenarios:
        for _ in range(WARMUPS):
            scenario.run_once(client, record=False)
    for _ in range(ROUNDS):
        for scenario in scenarios:
            scenario.run_once(client, record=True)
    points = len(client.get(scenarios[5].url).json()["t"])

    missed: list[str] = []
    healthz = scenarios[0].median
    lines = [
        f"Overview, {N_LOADERS:,} loaders, {run_count:,} runs, {signal_count:,} signals, {N_INCIDENTS} open "
        f"incidents, PostgreSQL {connection.pg_version // 10000}; {WARMUPS} warm-ups, {ROUNDS} interleaved rounds; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; Python {sys.version.split()[0]}",
        "",
        "| scenario | tiles | SQL queries | server ms median | server ms p95 | x /healthz |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.label} | {s.tiles if s.tiles is not None else ''} | {s.queries} | {s.median:.1f} | {s.p95:.1f} "
            f"| {s.median / healthz:.1f} |"
        )
    checks = ["", "| target | result |", "|---|---|"]
    overview = [s for s in scenarios if s.group == "overview"]
    for s in overview:
        ok = s.median <= OVERVIEW_MS
        checks.append(f"| {s.label}: median ≤ {OVERVIEW_MS:.0f} ms | {'PASS' if ok else 'FAIL'} ({s.median:.1f} ms) |")
        if not ok:
            missed.append(f"overview: {s.label} median {s.median:.1f} ms > {OVERVIEW_MS:.0f} ms")
    counts = {q for s in overview for q in s.query_counts}
    constant = len(counts) == 1
    checks.append(
        "| overview: the same queries for 1,000 loaders, 50 loaders and one status | "
        f"{'PASS' if constant else 'FAIL'} ({', '.join(f'{s.label}: {s.queries}' for s in overview)}) |"
    )
    if not constant:
        missed.append(f"overview: query counts differ with the number of loaders: {sorted(counts)}")
    chart = scenarios[5]
    ok = chart.median <= CHART_MS
    checks.append(
        f"| chart data ({points:,} runs) median ≤ {CHART_MS:.0f} ms | {'PASS' if ok else 'FAIL'} "
        f"({chart.median:.1f} ms) |"
    )
    if not ok:
        missed.append(f"chart data median {chart.median:.1f} ms > {CHART_MS:.0f} ms")

    browser = _browser_drawn(client)
    if isinstance(browser, str):
        checks.append(f"| overview fully drawn in the browser ≤ {BROWSER_MS:.0f} ms | FAIL ({browser}) |")
        missed.append(f"browser: {browser}")
    else:
        loads, drawn = browser
        ok = statistics.median(drawn) <= BROWSER_MS
        checks.append(
            f"| overview fully drawn in headless Chromium, median of {BROWSER_ROUNDS} ≤ {BROWSER_MS:.0f} ms | "
            f"{'PASS' if ok else 'FAIL'} (drawn {statistics.median(drawn):.0f} ms, max {max(drawn):.0f} ms; "
            f"load event {statistics.median(loads):.0f} ms) |"
        )
        if not ok:
            missed.append(f"browser: overview drawn in {statistics.median(drawn):.0f} ms > {BROWSER_MS:.0f} ms")
    notes = [
        "",
        f"Seeding {seed_s:.1f} s ({signal_count:,} signals by INSERT … SELECT generate_series in {signals_s:.1f} s). "
        "Server time = perf_counter around django.test.Client.get (in-process, DEBUG=true, query logging on).",
    ]
    report = lines + checks + notes
    print("\n".join(report))
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text("# Overview benchmark\n\n" + "\n".join(report) + "\n")
    print(f"\nwritten to {RESULTS_FILE.relative_to(RESULTS_FILE.parents[2])}")
    return missed
