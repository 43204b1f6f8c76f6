"""tests/grafana/sql_macros.py expands Grafana's PostgreSQL macros exactly as Grafana does.

The expected strings are those of Grafana's own ``pkg/tsdb/grafana-postgresql-datasource/
macros_test.go`` (range 2018-04-12 18:00 → 18:05 UTC; its column ``time_column`` is ``col``
here) and of its documentation, so the SQL the panel proofs run is the SQL Grafana would send.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.grafana.sql_macros import MacroError, expand, format_interval, go_float, panel_sql, parse_interval

FROM = dt.datetime(2018, 4, 12, 18, 0, tzinfo=dt.UTC)
TO = FROM + dt.timedelta(minutes=5)


def grafana(sql: str, start: dt.datetime = FROM, end: dt.datetime = TO, interval: str = "1m") -> str:
    return expand(sql, start=start, end=end, interval=parse_interval(interval))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select $__time(col)", 'select col AS "time"'),
        ("select min($__time(col))", 'select min(col AS "time")'),
        ("select $__timeEpoch(col)", 'select extract(epoch from col) as "time"'),
        ("WHERE $__timeFilter(col)", "WHERE col BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        ("SELECT $__timeGroup(col,'5m')", "SELECT floor(extract(epoch from col)/300)*300"),
        ("SELECT $__timeGroupAlias(col,'5m')", 'SELECT floor(extract(epoch from col)/300)*300 AS "time"'),
        ("$__timeGroup(col , '5m')", "floor(extract(epoch from col)/300)*300"),
        ("$__timeGroupAlias(col , '5m')", 'floor(extract(epoch from col)/300)*300 AS "time"'),
        # pre-5.3 compatibility: directly followed by a comma, $__timeGroup names the column "time"
        ("SELECT $__timeGroup(col,'5m'), value", 'SELECT floor(extract(epoch from col)/300)*300 AS "time", value'),
        ("SELECT $__timeGroup(col,'5m') as time, x", "SELECT floor(extract(epoch from col)/300)*300 as time, x"),
        ("SELECT $__timeGroupAlias(t, 1h, 0)", 'SELECT floor(extract(epoch from t)/3600)*3600 AS "time"'),
        ("SELECT $__timeGroupAlias(t, '20ms', NULL)", 'SELECT floor(extract(epoch from t)/0.02)*0.02 AS "time"'),
        ("SELECT $__timeGroup(t, '12d', previous)", "SELECT floor(extract(epoch from t)/1.0368e+06)*1.0368e+06"),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        ("select $__unixEpochNanoFilter(time)", "select time >= 1523556000000000000 AND time <= 1523556300000000000"),
        ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
        ("select $__unixEpochNanoTo()", "select 1523556300000000000"),
        ("select $__unixEpochFrom(), $__unixEpochTo()", "select 1523556000, 1523556300"),
        ("SELECT $__unixEpochGroup(col+adj,'5m')", "SELECT floor((col+adj)/300)*300"),
        ("SELECT $__unixEpochGroupAlias(col+adj,'5m')", 'SELECT floor((col+adj)/300)*300 AS "time"'),
        ("SELECT $__interval, $__interval_ms", "SELECT 1m, 60000"),
    ],
)  # fmt: skip
def test_it_expands_like_grafanas_macro_engine(sql: str, expected: str) -> None:
    assert grafana(sql) == expected


def test_it_formats_times_like_go_rfc3339nano_and_floors_epoch_seconds() -> None:
    start = dt.datetime(1960, 2, 1, 7, 0, 0, 500_000, tzinfo=dt.UTC)
    end = dt.datetime(1980, 2, 3, 8, 0, 0, 500_000, tzinfo=dt.UTC)
    assert grafana("$__timeFilter(c)", start, end) == "c BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'"
    assert grafana("$__unixEpochFilter(c)", start, end) == "c >= -312915600 AND c <= 318412800"


def test_it_converts_a_zoned_range_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    assert grafana("$__timeFrom()", FROM.astimezone(paris), TO) == "'2018-04-12T18:00:00Z'"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeFilter()", "missing time column"),
        ("$__timeGroup(t)", "needs time column and interval"),
        ("$__timeGroup(t, 'soon')", "error parsing interval"),
        ("$__timeGroup(t, 5m, zero)", "error parsing fill value"),
        ("$__timeBucket(t)", 'unknown macro "__timeBucket"'),
    ],
)
def test_it_refuses_what_grafana_refuses(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message):
        grafana(sql)


def test_go_formatting_helpers() -> None:
    assert [go_float(x) for x in (300.0, 0.02, 60.0, 86400.0, 1036800.0, 0.0001, 0.00001)] == [
        "300", "0.02", "60", "86400", "1.0368e+06", "0.0001", "1e-05",
    ]  # fmt: skip
    assert [format_interval(parse_interval(t)) for t in ("90s", "1h30m", "2d", "1w", "250ms")] == [
        "1m", "1h", "2d", "7d", "250ms",
    ]  # fmt: skip


def test_panel_sql_does_the_variables_first_then_the_macros() -> None:
    sql = "SELECT $__timeGroupAlias(c, $__interval, 0) FROM t WHERE code ~ '^${loader:regex}$' AND $__timeFilter(c)"
    assert panel_sql(sql, {"loader": ["A-1", "B"]}, start=FROM, end=TO, interval=dt.timedelta(minutes=2)) == (
        "SELECT floor(extract(epoch from c)/120)*120 AS \"time\" FROM t WHERE code ~ '^(A\\-1|B)$' "
        "AND c BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )
