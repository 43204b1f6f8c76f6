"""Every SQL panel of the Grafana dashboards on 10 million signals and 1,000 loaders (issue #16).

Targets: each SQL panel query over its default range (now-24h..now) ≤ 200 ms, median and p95;
EXPLAIN shows it reads only the day partitions of ``signals_app_signal`` that the range covers.

Method
------
The data set is the operations overview's (``bench_overview``: 1,000 loaders in 20 teams, ≈ 510,000
runs and ``BENCH_OVERVIEW_SIGNALS`` = 10,000,000 signals over 30 days in day partitions, 300 open
incidents), built by its own functions, or reused when a kept run left it in the database
(``BENCH_OVERVIEW_KEEP=1``/``BENCH_GRAFANA_SQL_KEEP=1`` keep it afterwards); a reused data set is
measured over the 24 hours that end at its newest signal, so the range holds a full day of data
however long ago it was built. The read-only role is
created by ``grafana_role_apply`` as in production, and every query runs over a connection *as
that role* (psycopg, TCP, like Grafana's), with its text built as Grafana sends it: the dashboard
variables (All, one team, one loader), then the data source's macros for now-24h..now at a 1m
interval (``tests/grafana/sql_macros.py``). ``WARMUPS`` warm-ups, then ``ROUNDS`` interleaved
rounds of every query. Partition pruning: ``EXPLAIN (FORMAT JSON)`` of each query as the role, every
relation of the plan that is a partition of ``signals_app_signal`` must be a day of the range.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from common import TimedScenario
from django.conf import settings
from django.db import connection
from django.utils import timezone

from etl_monitor.roles import roles_sync
from loaders.models import Loader
from signals_app.models import Signal
from tests.grafana.dashboards import POSTGRES, dashboard_load, targets, variable_defaults
from tests.grafana.sql_macros import panel_sql

ROLE = "bench_grafana"
WARMUPS = 3
ROUNDS = 20
BUDGET_MS = 200.0
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "grafana_sql.md"


@dataclass
class Query(TimedScenario):
    """One panel query with its variables; ``times`` in ms (median and p95 from TimedScenario)."""

    label: str
    sql: str
    times: list[float] = field(default_factory=list)
    rows: int = 0
    partitions: list[str] = field(default_factory=list)


def _dataset() -> tuple[dt.datetime, float | None]:
    """The overview's data set: reused if a kept run left it (returns when it was seeded), else built."""
    import bench_overview as overview  # bench/ is on sys.path (bench/run.py)

    loaders = Loader.objects.filter(loader_code__startswith="OVW-").count()
    newest = Signal.objects.order_by("-captured_at").values_list("captured_at", flat=True).first()
    if loaders == overview.N_LOADERS and newest is not None:
        print(f"reusing the overview's data set (seeded up to {newest:%Y-%m-%d %H:%M} UTC)", flush=True)
        return newest, None
    import random

    rng = random.Random(20261203)
    overview._truncate()
    now = timezone.now()
    t0 = time.perf_counter()
    seeded = overview._seed_registry(rng, now)
    overview._seed_runs(seeded["periods"], now, rng)
    overview._seed_signals([loader.pk for loader in seeded["loaders"]], now)
    overview._seed_incidents(seeded["loaders"], now, rng)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return now, time.perf_counter() - t0


def _role_connection() -> psycopg.Connection:
    from etl_monitor.grafana_role import grafana_role_apply

    grafana_role_apply(role=ROLE, password="bench-grafana-password")
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        dbname=db["NAME"],
        user=ROLE,
        password="bench-grafana-password",
        autocommit=True,
    )


def _relations(plan: dict[str, Any]) -> list[str]:
    found = [plan["Relation Name"]] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += _relations(child)
    return found


def _queries(now: dt.datetime) -> list[Query]:
    # The concrete picks are a loader (and its team) that has failures and runs in the range, so
    # filtered panels are timed on rows, not on an empty answer.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT l.loader_code, t.name FROM signals_app_signal s
            JOIN loaders_loader l ON l.id = s.loader_id JOIN loaders_team t ON t.id = l.owner_id
            WHERE s.validation_status = 'FAILED' AND s.captured_at > %s
            GROUP BY l.loader_code, t.name
            ORDER BY (SELECT count(*) FROM signals_app_run r WHERE r.loader_id = min(l.id) AND r.started_at > %s) DESC,
                     l.loader_code
            LIMIT 1
            """,
            [now - dt.timedelta(hours=24)] * 2,
        )
        loader, team = cursor.fetchone()
    start, end = now - dt.timedelta(hours=24), now
    queries = []
    for target in targets(POSTGRES):
        defaults = variable_defaults(dashboard_load(target.dashboard))
        for scope, chosen in (
            ("All", {}),
            (f"team {team}", {"team": [team]}),
            (f"loader {loader}", {"loader": [loader]}),
        ):
            sql = panel_sql(target.target["rawSql"], {**defaults, **chosen}, start=start, end=end)
            queries.append(Query(f"{target.panel['title']} ({scope})", sql))
    return queries


def main() -> list[str]:
    roles_sync()
    now, seed_s = _dataset()
    queries = _queries(now)
    range_days = {f"signals_app_signal_p{day:%Y%m%d}" for day in ((now - dt.timedelta(hours=24)).date(), now.date())}
    missed: list[str] = []
    with _role_connection() as conn:
        for q in queries:
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {q.sql}").fetchone()[0][0]["Plan"]
            q.partitions = sorted({r for r in _relations(plan) if r.startswith("signals_app_signal")})
            for _ in range(WARMUPS):
                conn.execute(q.sql).fetchall()
        for _ in range(ROUNDS):
            for q in queries:
                started = time.perf_counter()
                q.rows = len(conn.execute(q.sql).fetchall())
                q.times.append((time.perf_counter() - started) * 1000)
    load = os.getloadavg()[0]
    lines = [
        f"Grafana SQL panels as role {ROLE}, {Loader.objects.count():,} loaders, ~{_signals_estimate():,} signals, "
        f"range now-24h..now (data up to {now:%Y-%m-%d %H:%M} UTC), PostgreSQL {connection.pg_version // 10000}; "
        f"{WARMUPS} warm-ups, {ROUNDS} interleaved rounds; {time.strftime('%Y-%m-%d %H:%M %Z')}, load {load:.1f}; "
        f"Python {sys.version.split()[0]}",
        "",
        "| panel (variables) | rows | ms median | ms p95 | signal partitions read | target |",
        "|---|---:|---:|---:|---|---|",
    ]
    for q in queries:
        fast = q.median <= BUDGET_MS and q.p95 <= BUDGET_MS
        pruned = set(q.partitions) <= range_days
        lines.append(
            f"| {q.label} | {q.rows} | {q.median:.1f} | {q.p95:.1f} | {', '.join(q.partitions) or '—'} | "
            f"{'PASS' if fast and pruned else 'FAIL'} |"
        )
        if not fast:
            missed.append(f"grafana sql: {q.label}: median {q.median:.1f} ms, p95 {q.p95:.1f} ms > {BUDGET_MS:.0f} ms")
        if not pruned:
            missed.append(
                f"grafana sql: {q.label} reads partitions outside the range: {sorted(set(q.partitions) - range_days)}"
            )
    total = sum(q.median for q in queries if q.label.endswith("(All)"))
    lines += [
        "",
        f"The dashboard's SQL panels together (All): {total:.1f} ms of the roadmap's 2 s per dashboard.",
    ]
    if seed_s is not None:
        lines.append(f"Data set built in {seed_s:.0f} s (bench_overview's builder).")
    report = "\n".join(lines)
    print(report)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text("# Grafana SQL panels benchmark\n\n" + report + "\n")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {ROLE}; DROP ROLE {ROLE}")
    if not (os.environ.get("BENCH_GRAFANA_SQL_KEEP") or os.environ.get("BENCH_OVERVIEW_KEEP")):
        import bench_overview

        bench_overview._truncate()
    return missed


def _signals_estimate() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'signals_app_signal'::regclass"
        )
        return cursor.fetchone()[0]
