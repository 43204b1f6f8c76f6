"""Rule backtest (#19 part 2): one rule over 30 days × 1,000 loaders ≤ 10 s.

Method
------
1,000 loaders with an ACTIVE version (expected rows 5,000–20,000), each with an hourly run for 44
days (the 30 days of the backtest and the ANOMALY_HISTORY_DAYS = 14 before, which the anomaly
detectors learn from first): rows written follow a daily wave (10,000 ± 4,000) with 3 % noise, and
every 50th loader has a 3-hour drop to a fifth. The runs are inserted by one ``INSERT … SELECT``
over ``generate_series`` on PostgreSQL (bulk_create on SQLite).

Then, in this process, ``rule_backtest(days=30)`` of:
1. an anomaly rule over rows written (interval 1 h: 721 evaluations; every point of the 44 days is
   read once and fed to one detector per loader, in memory);
2. a threshold rule, volume_out_of_range (interval 1 h: 721 evaluations, one query each);
3. run_failed with a 1-minute interval: stretched to 15 minutes by BACKTEST_MAX_EVALUATIONS.
Each is timed (wall clock) with the process's peak resident memory (ru_maxrss) before and after,
and the would-be incidents counted.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import resource
import time

from django.db import connection
from django.utils import timezone

from incidents.backtest import rule_backtest
from incidents.models import DetectionRule
from loaders.models import Loader, LoaderVersion, Team, VersionState
from signals_app.models import Run

N_LOADERS = 1_000
DAYS = 30
HISTORY_DAYS = 14
MAX_SECONDS = 10.0


def _seed(now: dt.datetime) -> None:
    from django.contrib.auth.models import User

    user = User.objects.create_user("bench-backtest")
    team = Team.objects.create(slug="bench-backtest", name="Bench backtest")
    loaders = Loader.objects.bulk_create(
        [
            Loader(loader_code=f"BT-{i:04d}", name=f"Loader {i}", owner=team, first_activated_at=now)
            for i in range(N_LOADERS)
        ]
    )
    LoaderVersion.objects.bulk_create(
        [
            LoaderVersion(
                loader=loader,
                number=1,
                state=VersionState.ACTIVE,
                schedule_cron="0 * * * *",
                max_duration_minutes=60,
                expected_rows_min=5_000,
                expected_rows_max=20_000,
                decided_at=now - dt.timedelta(days=90),
                created_by=user,
            )
            for loader in loaders
        ]
    )
    first = (now - dt.timedelta(days=DAYS + HISTORY_DAYS)).replace(minute=0, second=0, microsecond=0)
    hours = (DAYS + HISTORY_DAYS) * 24
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        _runs_insert_sql(first, hours)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum would soon after: the planner needs the tables' sizes
    else:
        _runs_bulk_create(loaders, first, hours)
    print(f"seeded {Run.objects.count():,} runs in {time.perf_counter() - started:.1f} s")


def _rows_sql() -> str:
    """Rows written of loader ``l`` at hour ``h`` (after ``first``) in SQL: the wave, the noise, the drops."""
    wave = "(10000 + 4000 * sin(2 * pi() * (extract(hour from t.at) - 6) / 24))"
    noise = "(1 + 0.03 * (random() + random() + random() - 1.5) * 2)"
    drop = f"(CASE WHEN l.i %% 50 = 0 AND h BETWEEN {HISTORY_DAYS * 24} + (l.i %% 600) AND {HISTORY_DAYS * 24} + (l.i %% 600) + 2 THEN 0.2 ELSE 1 END)"  # noqa: E501
    return f"round({wave} * {noise} * {drop})"


def _runs_insert_sql(first: dt.datetime, hours: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Run._meta.db_table} (run_id, loader_id, status, started_at, finished_at, duration_seconds,
                rows_written, error_text, log_excerpt, correlation_id, source, loader_paused, no_active_version,
                created_at, updated_at)
            SELECT gen_random_uuid(), l.id, 'SUCCEEDED', t.at, t.at + interval '5 minutes', 300, {_rows_sql()},
                '', '', '', 'API', false, false, now(), now()
            FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM loaders_loader
                  WHERE loader_code LIKE 'BT-%%') AS l
            CROSS JOIN generate_series(0, %s - 1) AS h
            CROSS JOIN LATERAL (SELECT %s::timestamptz + h * interval '1 hour' AS at) AS t
            """,
            [hours, first],
        )


def _runs_bulk_create(loaders: list[Loader], first: dt.datetime, hours: int) -> None:
    rng = random.Random(19)
    batch: list[Run] = []
    for i, loader in enumerate(loaders):
        for h in range(hours):
            at = first + dt.timedelta(hours=h)
            rows = (10_000 + 4_000 * math.sin(2 * math.pi * (at.hour - 6) / 24)) * (1 + rng.gauss(0, 0.03))
            if i % 50 == 0 and 0 <= h - HISTORY_DAYS * 24 - i % 600 <= 2:
                rows *= 0.2
            batch.append(
                Run(
                    loader=loader,
                    status="SUCCEEDED",
                    started_at=at,
                    finished_at=at + dt.timedelta(minutes=5),
                    duration_seconds=300,
                    rows_written=round(rows),
                )
            )
            if len(batch) >= 20_000:
                Run.objects.bulk_create(batch)
                batch = []
    Run.objects.bulk_create(batch)


def _measure(label: str, rule: DetectionRule, now: dt.datetime) -> tuple[str, float, int]:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = rule_backtest(rule=rule, days=DAYS, now=now)
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = (
        f"| {label} | {result.evaluations} × {duration(result.step_seconds)} | {result.subjects_measured:,} "
        f"| {len(result.incidents)} ({len(result.per_subject)} subjects) | **{seconds:.1f} s** "
        f"| {rss_before:.0f} → {rss_after:.0f} MB |"
    )
    return line, seconds, len(result.incidents)


def duration(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def main() -> list[str]:
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    DetectionRule.objects.update(enabled=False)
    if Loader.objects.filter(loader_code__startswith="BT-").exists():
        # A database kept from an earlier run (DATABASE_URL given): the same data, an hour or so older.
        latest = Run.objects.filter(loader__loader_code__startswith="BT-").latest("finished_at").finished_at
        now = (latest + dt.timedelta(hours=1)).replace(minute=30)  # as seeded: the last run finished 55 min before
        print(f"reusing {Run.objects.count():,} runs seeded before (backtest up to {now:%Y-%m-%d %H:%M})")
    else:
        _seed(now)
    rules = [
        (
            "anomaly (rows written)",
            DetectionRule(
                name="bench anomaly", kind="anomaly", params={"source": "rows_written"}, interval_seconds=3600
            ),
        ),
        (
            "volume_out_of_range",
            DetectionRule(name="bench volume", kind="volume_out_of_range", window_seconds=3600, interval_seconds=3600),
        ),
        ("run_failed (1 min)", DetectionRule(name="bench failed", kind="run_failed", threshold=0, interval_seconds=60)),
    ]
    print(f"\nBacktest of one rule over {DAYS} days × {N_LOADERS:,} loaders ({connection.vendor}):\n")
    print("| Rule | Evaluations | Subjects | Would-be incidents | Time | Peak RSS |")
    print("|---|---|---|---|---|---|")
    missed = []
    for label, rule in rules:
        line, seconds, _count = _measure(label, rule, now)
        print(line)
        if seconds > MAX_SECONDS:
            missed.append(f"backtest {label}: {seconds:.1f} s > {MAX_SECONDS:.0f} s")
    return missed
