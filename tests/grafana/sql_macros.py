"""Grafana's PostgreSQL macros, expanded the way the grafana-postgresql-datasource backend does.

A SQL panel's text reaches PostgreSQL in three steps: the browser replaces the dashboard's
variables (``dashboards.interpolate``), then the data source's backend replaces ``$__interval``,
``$__interval_ms``, ``$__unixEpochFrom()`` and ``$__unixEpochTo()`` (sqleng's ``Interpolate``), then
its macro engine the ``$__name(args)`` macros (``pkg/tsdb/grafana-postgresql-datasource/macros.go``).
``expand`` does the last two for a time range and an interval, with Grafana's exact output (its own
``macros_test.go`` cases are the unit tests), so a proof runs what Grafana would send, not a guess.

Quirks kept on purpose, because Grafana has them: the macro pattern stops at the first ``)`` (a
macro argument cannot hold parentheses); arguments are split on every ``,``; ``$__timeGroup(…)``
directly followed by ``,`` gets `` AS "time"`` (pre-5.3 compatibility); interval seconds are
printed like Go's ``%v`` of a float64 (``300``, ``0.02``, ``1.0368e+06``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal

from tests.grafana.dashboards import interpolate

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_DATE_UNIT = re.compile(r"^(\d+)([dwMy])$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class MacroError(ValueError):
    """A macro Grafana would refuse (the panel shows this message instead of data)."""


def rfc3339nano(moment: dt.datetime) -> str:
    """Go's ``t.UTC().Format(time.RFC3339Nano)``: trailing zeros of the fraction dropped, ``Z``."""
    utc = moment.astimezone(dt.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_float(value: float) -> str:
    """Go's ``fmt.Sprintf("%v", float64)``: the shortest digits, exponent form from 1e+06 up or
    below 1e-04 (strconv's 'g' with the shortest precision decides at precision 6)."""
    if value == 0:
        return "0"
    _sign, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + int(exponent) - 1
    prefix = "-" if value < 0 else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{prefix}0.{'0' * (-exp - 1)}{text}"
    if len(text) <= exp + 1:
        return prefix + text + "0" * (exp + 1 - len(text))
    return f"{prefix}{text[: exp + 1]}.{text[exp + 1 :]}"


def parse_interval(text: str) -> dt.timedelta:
    """gtime.ParseInterval: ``5m``, ``1h30m``, ``300ms`` (Go durations) or ``2d``/``1w``/``1M``/``1y``."""
    date_unit = _DATE_UNIT.match(text)
    if date_unit:
        number, unit = int(date_unit.group(1)), date_unit.group(2)
        if unit in ("M", "y"):  # calendar months/years from now: not fixed lengths, and no panel uses them
            raise MacroError(f"error parsing interval {text}: calendar units are not supported here")
        return dt.timedelta(days=number * (7 if unit == "w" else 1))
    if text == "0":
        return dt.timedelta(0)
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise MacroError(f"error parsing interval {text}")
    return dt.timedelta(seconds=sum(float(n) * _GO_UNITS[u] for n, u in parts))


def format_interval(interval: dt.timedelta) -> str:
    """gtime.FormatInterval: what ``$__interval`` becomes (the largest whole unit)."""
    ms = int(interval / dt.timedelta(milliseconds=1))
    for unit, size in (("y", 365 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


def _fill_check(value: str) -> None:
    # sqleng.SetupFillmode: NULL, previous or a number; the mode changes the frame, not the SQL.
    if value in ("NULL", "previous"):
        return
    try:
        float(value)
    except ValueError:
        raise MacroError(f'error parsing fill value {value}: not NULL, "previous" or a number') from None


def _group(name: str, args: list[str], column_expression: str) -> str:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    seconds = go_float(parse_interval(args[1].strip("'")).total_seconds())
    if len(args) == 3:
        _fill_check(args[2])
    return f"floor({column_expression.format(args[0])}/{seconds})*{seconds}"


def _evaluate(name: str, args: list[str], start: dt.datetime, end: dt.datetime) -> str:
    def column() -> str:
        if not args or args == [""]:
            raise MacroError(f"missing time column argument for macro ${name}")
        return args[0]

    if name == "__time":
        return f'{column()} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column()}) as "time"'
    if name == "__timeFilter":
        return f"{column()} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339nano(start)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(end)}'"
    if name == "__timeGroup":
        return _group(name, args, "extract(epoch from {})")
    if name == "__timeGroupAlias":
        return _evaluate("__timeGroup", args, start, end) + ' AS "time"'
    if name == "__unixEpochFilter":
        c = column()
        return f"{c} >= {_seconds(start)} AND {c} <= {_seconds(end)}"
    if name == "__unixEpochNanoFilter":
        c = column()
        return f"{c} >= {_nanos(start)} AND {c} <= {_nanos(end)}"
    if name == "__unixEpochNanoFrom":
        return str(_nanos(start))
    if name == "__unixEpochNanoTo":
        return str(_nanos(end))
    if name == "__unixEpochGroup":
        return _group(name, args, "({})")
    if name == "__unixEpochGroupAlias":
        return _evaluate("__unixEpochGroup", args, start, end) + ' AS "time"'
    raise MacroError(f'unknown macro "{name}"')


def _seconds(moment: dt.datetime) -> int:
    return math.floor(moment.timestamp())  # Go's Time.Unix() floors (a 1960 date with .5 s too)


def _nanos(moment: dt.datetime) -> int:
    delta = moment.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def expand(sql: str, *, start: dt.datetime, end: dt.datetime, interval: dt.timedelta) -> str:
    """``sql`` as the data source's backend sends it for the range ``start``..``end`` (aware
    datetimes) and the panel's ``interval``; raises ``MacroError`` where Grafana reports one."""
    sql = sql.replace("$__interval_ms", str(int(interval / dt.timedelta(milliseconds=1))))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(_seconds(start)))
    sql = sql.replace("$__unixEpochTo()", str(_seconds(end)))
    original = sql

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "__timeGroup":
            after = original.find(match.group(0)) + len(match.group(0))  # Go looks at the first occurrence
            if after < len(original) and original[after] == ",":
                name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return _evaluate(name, args, start, end)

    return _MACRO.sub(replace, sql)


def panel_sql(
    raw_sql: str,
    variables: dict[str, str | list[str]],
    *,
    start: dt.datetime,
    end: dt.datetime,
    interval: dt.timedelta = dt.timedelta(minutes=1),
) -> str:
    """A panel's ``rawSql`` as PostgreSQL receives it: variables (the browser), then the backend's
    macros. ``interval`` is ``$__interval`` (dashboards.GLOBALS' 1m for 24 h at a common width)."""
    browser = {"__interval": format_interval(interval), "__interval_ms": str(interval // dt.timedelta(milliseconds=1))}
    return expand(interpolate(raw_sql, {**browser, **variables}), start=start, end=end, interval=interval)
