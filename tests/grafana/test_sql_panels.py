"""Every SQL panel of every dashboard runs, as Grafana's read-only role, and answers what it should.

A day of data — two teams, runs of every status over 24 h, FAILED and SUCCESS signals, incidents
open, acknowledged, resolved and closed, and older rows just outside the range — then each SQL
target of ``targets(POSTGRES)`` is expanded the way Grafana sends it (variables, then the data
source's macros, for now-24h..now) and run *as the role* ``manage.py grafana_role`` creates, with
the variables at All, at one team and at one loader. Each must run, return the rows written down
below for its panel (a new SQL panel fails here until its expected rows are added), return every
field its links and overrides name, and a time series must have the shape Grafana reads.

PostgreSQL only (the role is PostgreSQL's): skipped on SQLite, failed in CI.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg.errors
import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from incidents.models import Incident
from loaders.models import Loader, LoaderVersion, Team, VersionState
from signals_app.models import Run, Signal
from tests.grafana.dashboards import POSTGRES, Target, dashboard_load, field_references, targets, variable_defaults
from tests.grafana.sql_macros import panel_sql

pytestmark = pytest.mark.django_db

OPS, FIN = "Ops Data", "Finance BI"
LOADERS = {"ALPHA-1": OPS, "ALPHA-2": OPS, "BETA-1": FIN, "BETA-2": FIN}
# FAILED signals in the range, per loader (ALPHA-2 also has 20 from 30 hours ago: outside it).
FAILED_SIGNALS = {"BETA-1": 9, "ALPHA-1": 5, "ALPHA-2": 3, "BETA-2": 1}
# (hours ago, status) of each loader's runs; those older than 24 h must not count.
RUNS = {
    "ALPHA-1": [(23.5, "SUCCEEDED"), (18, "FAILED"), (12, "SUCCEEDED"), (6, "TIMED_OUT"), (0.2, "RUNNING")],
    "ALPHA-2": [(20, "SUCCEEDED"), (10, "SUCCEEDED"), (30, "FAILED"), (26, "TIMED_OUT")],
    "BETA-1": [(28, "SUCCEEDED"), (22, "FAILED"), (16, "FAILED"), (8, "SUCCEEDED"), (2, "TIMED_OUT")],
    "BETA-2": [(14, "SUCCEEDED")],
}
# Rows written by the successful runs above (2,000 where not given), against each ACTIVE
# version's expected range: 1,000..5,000, except BETA-2, which has no range (never outside it).
RUN_ROWS = {("ALPHA-1", 23.5): 500, ("ALPHA-2", 20): 9000, ("ALPHA-2", 10): 100, ("BETA-1", 28): 1, ("BETA-1", 8): 6000}
RUN_ROWS[("BETA-2", 14)] = 999_999
EXPECTED_ROWS = {"ALPHA-1": (1000, 5000), "ALPHA-2": (1000, 5000), "BETA-1": (1000, 5000), "BETA-2": (None, None)}
# (severity, status, loader or None, hours since first seen)
INCIDENTS = [
    ("HIGH", "OPEN", "ALPHA-1", 3),
    ("CRITICAL", "ACKNOWLEDGED", "BETA-1", 5),
    ("MEDIUM", "OPEN", None, 1),
    ("LOW", "RESOLVED", "ALPHA-2", 7),
    ("CRITICAL", "CLOSED", "BETA-2", 9),
]
# The variables besides All: one team, one loader (what a user picks in the dashboard's menus).
SCOPES = {"all": {}, "team": {"team": [FIN]}, "loader": {"loader": ["ALPHA-1"]}}


@dataclass
class Day:
    now: dt.datetime
    last_failure: dict[str, dt.datetime]


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def in_scope(code: str | None, scope: str) -> bool:
    if scope == "team":
        return code is not None and LOADERS[code] == FIN
    if scope == "loader":
        return code == "ALPHA-1"
    return True


@pytest.fixture
def day(require_postgres: None) -> Day:
    now = timezone.now()
    teams = {name: Team.objects.create(slug=name.lower().replace(" ", "-"), name=name) for name in (OPS, FIN)}
    loaders = {
        code: Loader.objects.create(loader_code=code, name=f"{code} job", owner=teams[team], first_activated_at=now)
        for code, team in LOADERS.items()
    }
    LoaderVersion.objects.bulk_create(
        LoaderVersion(
            loader=loader,
            number=1,
            state=VersionState.ACTIVE,
            expected_rows_min=EXPECTED_ROWS[code][0],
            expected_rows_max=EXPECTED_ROWS[code][1],
        )
        for code, loader in loaders.items()
    )
    signals, last_failure = [], {}
    for code, loader in loaders.items():
        for n in range(FAILED_SIGNALS[code]):
            at = now - dt.timedelta(hours=23) + dt.timedelta(hours=2 * n, minutes=len(code))
            signals.append(
                Signal(loader=loader, signal_key="rows", validation_status="FAILED", captured_at=at, received_at=at)
            )
            last_failure[code] = at
        for n in range(12):  # a SUCCESS signal every two hours for everyone
            at = now - dt.timedelta(hours=2 * n, minutes=30)
            signals.append(
                Signal(loader=loader, signal_key="rows", validation_status="SUCCESS", captured_at=at, received_at=at)
            )
    old = now - dt.timedelta(hours=30)
    signals += [
        Signal(
            loader=loaders["ALPHA-2"], signal_key="rows", validation_status="FAILED", captured_at=old, received_at=old
        )
        for _ in range(20)
    ]
    Signal.objects.bulk_create(signals)
    for code, runs in RUNS.items():
        for hours, status in runs:
            started = now - dt.timedelta(hours=hours)
            finished = None if status == "RUNNING" else started + dt.timedelta(minutes=5)
            Run.objects.create(
                loader=loaders[code],
                status=status,
                started_at=started,
                finished_at=finished,
                rows_written=RUN_ROWS.get((code, hours), 2000) if status == "SUCCEEDED" else None,
            )
    Incident.objects.bulk_create(
        Incident(
            title=f"{code or 'platform'} {severity.lower()} trouble",
            severity=severity,
            category="TRANSACTION",
            status=status,
            loader=loaders.get(code) if code else None,
            subject=code or "platform",
            fingerprint=f"fp-{n}",
            first_seen=now - dt.timedelta(hours=hours),
            last_seen=now,
        )
        for n, (severity, status, code, hours) in enumerate(INCIDENTS)
    )
    return Day(now=now, last_failure=last_failure)


@pytest.fixture
def grafana(day: Day) -> str:
    role = f"grafana_panels_{uuid.uuid4().hex[:8]}"
    call_command("grafana_role", role=role, stdout=io.StringIO())
    return role


def as_role(role: str, statement: str) -> Result:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'SET ROLE "{role}"')
            cursor.execute(statement)
            result = Result([c.name for c in cursor.description], cursor.fetchall())
            cursor.execute("RESET ROLE")
            return result
    except DatabaseError as exc:
        raise exc.__cause__ from None


# --- what each panel must answer -------------------------------------------------------------


def top_failed(result: Result, scope: str, day: Day) -> None:
    expected = sorted(
        (code for code in FAILED_SIGNALS if in_scope(code, scope)), key=lambda c: (-FAILED_SIGNALS[c], c)
    )[:5]
    failed_runs = {
        code: sum(1 for hours, status in runs if hours < 24 and status in ("FAILED", "TIMED_OUT"))
        for code, runs in RUNS.items()
    }
    assert result.dicts() == [
        {
            "loader_code": code,
            "team": LOADERS[code],
            "failed_signals": FAILED_SIGNALS[code],
            "failed_runs": failed_runs[code],
            "last_failure": day.last_failure[code],
        }
        for code in expected
    ]
    if scope == "all":
        assert result.rows[0][0] == "BETA-1"  # the loader made to fail most; ALPHA-2's older 20 do not count


def open_incidents(result: Result, scope: str, day: Day) -> None:
    rows = result.dicts()
    expected = [
        (severity, status, code)
        for severity, status, code, _ in sorted(
            INCIDENTS, key=lambda i: (["CRITICAL", "HIGH", "MEDIUM", "LOW"].index(i[0]), i[3])
        )
        if status in ("OPEN", "ACKNOWLEDGED") and (code is None or in_scope(code, scope))
    ]
    assert [(r["severity"], r["status"], r["loader_code"]) for r in rows] == expected
    assert {r["id"] for r in rows} == set(
        Incident.objects.filter(status__in=["OPEN", "ACKNOWLEDGED"], title__in=[r["title"] for r in rows]).values_list(
            "id", flat=True
        )
    )


def runs_by_status(result: Result, scope: str, day: Day) -> None:
    counts: dict[str, int] = {}
    for code, runs in RUNS.items():
        for hours, status in runs:
            if hours < 24 and status != "RUNNING" and in_scope(code, scope):
                counts[status] = counts.get(status, 0) + 1
    got: dict[str, int] = {}
    for time, metric, runs in result.rows:
        got[metric] = got.get(metric, 0) + runs
        assert float(time) % 60 == 0  # one bucket per $__interval (1m)
        assert (day.now - dt.timedelta(hours=24)).timestamp() - 60 <= float(time) <= day.now.timestamp()
    assert got == counts


def loads_outside_volume(result: Result, scope: str, day: Day) -> None:
    outside: dict[str, list[tuple[float, int]]] = {}
    for code, runs in RUNS.items():
        low, high = EXPECTED_ROWS[code]
        for hours, status in runs:
            rows = RUN_ROWS.get((code, hours), 2000)
            if (
                status == "SUCCEEDED"
                and hours < 24
                and low is not None
                and not low <= rows <= high
                and in_scope(code, scope)
            ):
                outside.setdefault(code, []).append((hours, rows))
    expected = [
        {
            "loader_code": code,
            "team": LOADERS[code],
            "loads_outside": len(loads),
            "fewest_rows": min(rows for _, rows in loads),
            "most_rows": max(rows for _, rows in loads),
            "expected_rows_min": EXPECTED_ROWS[code][0],
            "expected_rows_max": EXPECTED_ROWS[code][1],
            "last_outside": day.now - dt.timedelta(hours=min(hours for hours, _ in loads)),
        }
        for code, loads in sorted(outside.items(), key=lambda item: (-len(item[1]), item[0]))
    ]
    assert result.dicts() == expected
    if scope == "all":
        assert [row["loader_code"] for row in expected] == ["ALPHA-2", "ALPHA-1", "BETA-1"]  # not BETA-2: no range


EXPECTED: dict[tuple[str, str], Callable[[Result, str, Day], None]] = {
    ("etl-transaction-monitoring", "Top 5 failed loaders (24 h)"): top_failed,
    ("etl-transaction-monitoring", "Open incidents"): open_incidents,
    ("etl-transaction-monitoring", "Finished runs by status"): runs_by_status,
    ("etl-transaction-monitoring", "Loads outside the expected volume"): loads_outside_volume,
}


# --- the proof ---------------------------------------------------------------------------------

SQL_TARGETS = targets(POSTGRES)


def test_there_are_sql_panels_and_each_has_its_expected_rows_written_down() -> None:
    assert SQL_TARGETS
    missing = [t.name for t in SQL_TARGETS if (t.dashboard, t.panel["title"]) not in EXPECTED]
    assert not missing, f"add the rows these panels must return to EXPECTED: {missing}"


def check_time_series_shape(result: Result, target: Target) -> None:
    """What Grafana's SQL data source needs of format=time_series: a ``time`` column (first, here),
    numeric value columns, an optional text ``metric`` column naming the series, sorted by time."""
    assert result.columns[0] == "time", f"{target.name}: the first column must be time, got {result.columns}"
    for row in result.rows:
        for column, value in zip(result.columns[1:], row[1:], strict=True):
            if column == "metric":
                assert isinstance(value, str)
            else:
                assert value is None or isinstance(value, int | float), f"{target.name}: {column} is not numeric"
    times = [float(row[0]) for row in result.rows]
    assert times == sorted(times), f"{target.name}: rows must be sorted by time"


def series_names(result: Result) -> set[str]:
    """The names Grafana gives the series (what a byName override matches): with a metric column and
    one value column, the metric's values (Grafana's pre-8 naming, kept); otherwise the columns."""
    values = [c for c in result.columns if c not in ("time", "metric")]
    if "metric" in result.columns:
        metrics = {row[result.columns.index("metric")] for row in result.rows}
        return metrics if len(values) == 1 else {f"{m} {v}" for m in metrics for v in values}
    return set(values)


@pytest.mark.parametrize("target", SQL_TARGETS, ids=lambda t: t.name)
def test_every_sql_panel_runs_as_the_grafana_role_and_answers_what_it_should(
    target: Target, grafana: str, day: Day
) -> None:
    defaults = variable_defaults(dashboard_load(target.dashboard))
    for scope, chosen in SCOPES.items():
        sql = panel_sql(
            target.target["rawSql"], {**defaults, **chosen}, start=day.now - dt.timedelta(hours=24), end=day.now
        )
        assert "$" not in sql.replace("'^", "").replace("$'", ""), f"{target.name}: something was not expanded: {sql}"
        try:
            result = as_role(grafana, sql)
        except psycopg.errors.Error as exc:
            pytest.fail(f"{target.name} ({scope}) failed as the Grafana role: {exc}\n{sql}")
        assert result.rows, f"{target.name} ({scope}) returned no rows"
        if target.target.get("format") == "time_series":
            check_time_series_shape(result, target)
            names = series_names(result)
        else:
            names = set(result.columns)
        missing = field_references(target.panel) - names
        assert not missing, f"{target.name} ({scope}): links/overrides name fields the query does not return: {missing}"
        EXPECTED[(target.dashboard, target.panel["title"])](result, scope, day)
