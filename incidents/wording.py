"""How incidents and silences read to a person: durations in words and "what fired" sentences.

The on-call page and the lists say what happened in a sentence ("Run duration 52 min > 45 min
allowed") instead of a JSON snapshot. Each rule kind's sentence is built from the incident's
metrics snapshot (what the kind measured, ``incidents.detection._snapshot``); a kind without a
sentence of its own reads as "<kind>: measured <value> <operator> <threshold>".

Values that come from a loader's contract (the maximum duration, the expected row range, the
schedule) are left out of the sentence when the reader's field policy hides or masks that
contract field: ``hidden`` names those fields.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Collection
from typing import Any

from etl_monitor.humanize import duration_words

OPERATOR_SIGNS = {"GT": ">", "GTE": "≥", "LT": "<", "LTE": "≤", "EQ": "=", "NEQ": "≠", "EXISTS": "exists"}


def number_words(value: float | None) -> str:
    """A measured number without float noise: 1,204 / 3.5 / 0.25."""
    if value is None:
        return "no value"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _sign(metrics: dict[str, Any]) -> str:
    return OPERATOR_SIGNS.get(metrics.get("operator") or "GT", ">")


def _run_duration(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    value, limit = metrics.get("value"), metrics.get("limit_seconds")
    from_contract = metrics.get("threshold") is None  # no rule threshold: the contract's maximum
    limit_text = "(limit hidden)" if from_contract and "max_duration_minutes" in hidden else duration_words(limit)
    if metrics.get("mode") == "min":
        return f"Run finished in {duration_words(value)} < {limit_text} expected at least"
    running = "Run still running after" if metrics.get("running") else "Run duration"
    return f"{running} {duration_words(value)} > {limit_text} allowed"


def _volume(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    rows = number_words(metrics.get("value"))
    low, high = metrics.get("expected_min"), metrics.get("expected_max")
    if {"expected_rows_min", "expected_rows_max"} & set(hidden):
        return f"{rows} rows written, outside the expected range (range hidden)"
    value = metrics.get("value")
    if low is not None and value is not None and value < low:
        return f"{rows} rows written < {number_words(low)} expected at least"
    if high is not None and value is not None and value > high:
        return f"{rows} rows written > {number_words(high)} expected at most"
    return f"{rows} rows written, outside the expected {number_words(low)}–{number_words(high)}"


def _run_failed(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    parts = []
    if runs := metrics.get("failed_runs"):
        parts.append(f"{runs} failed run{'s' if runs != 1 else ''}")
    if signals := metrics.get("failed_signals"):
        parts.append(f"{signals} FAILED signal{'s' if signals != 1 else ''}")
    what = " and ".join(parts) or f"{number_words(metrics.get('value'))} failures"
    return f"{what} in the last {window}"


def _failure_rate(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    counts = f" ({metrics['failed']} of {metrics['total']})" if "failed" in metrics and "total" in metrics else ""
    return (
        f"{number_words(metrics.get('value'))} % of signals FAILED{counts} {_sign(metrics)} "
        f"{number_words(metrics.get('threshold'))} % allowed, over {window}"
    )


def _metric(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    aggregation = metrics.get("aggregation", "avg")
    what = metrics.get("signal_key") or metrics.get("metric_type") or "the signal"
    return (
        f"{aggregation} of {what} {number_words(metrics.get('value'))} {_sign(metrics)} "
        f"{number_words(metrics.get('threshold'))} over {window}"
    )


def _missed_run(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    expected = metrics.get("expected_at")
    late = duration_words((metrics.get("value") or 0) * 60)
    if {"schedule_cron", "schedule_timezone"} & set(hidden) or not expected:
        return f"A scheduled run did not start ({late} late)"
    zone_name = metrics.get("timezone") or "UTC"
    try:
        due = dt.datetime.fromisoformat(expected).astimezone(zoneinfo.ZoneInfo(zone_name))
        when = f"{due:%a %d %b %H:%M} ({zone_name})"
    except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError):
        when = expected
    grace = "" if "grace_minutes" in hidden else f", grace {duration_words((metrics.get('grace_minutes') or 0) * 60)}"
    return f"The run due {when} did not start: {late} late{grace}"


def _freshness(metrics: dict[str, Any], window: str, hidden: Collection[str]) -> str:
    age = duration_words((metrics.get("value") or 0) * 60)
    last = metrics.get("last_data_at") or "unknown"
    if "freshness_sla_minutes" in hidden:
        return f"No fresh data for {age} (last data: {last}); the freshness limit is hidden"
    sla = duration_words((metrics.get("sla_minutes") or 0) * 60)
    return f"No fresh data for {age} > {sla} allowed (last data: {last})"


Sentence = Callable[[dict[str, Any], str, Collection[str]], str]

SENTENCES: dict[str, Sentence] = {
    "run_duration": _run_duration,
    "volume_out_of_range": _volume,
    "run_failed": _run_failed,
    "signal_failure_rate": _failure_rate,
    "metric_threshold": _metric,
    "missed_run": _missed_run,
    "freshness": _freshness,
}


def what_fired(
    kind: str | None,
    metrics: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    window_seconds: int | None = None,
    hidden: Collection[str] = (),
) -> str:
    """The sentence saying what fired, with the measured value against the threshold.

    ``kind`` and ``params`` are the rule's (None for incidents from outside, e.g. Alertmanager),
    ``metrics`` the incident's snapshot, ``hidden`` the contract fields the reader may not see."""
    metrics = {**(params if isinstance(params, dict) else {}), **(metrics if isinstance(metrics, dict) else {})}
    window = duration_words(window_seconds) if window_seconds else "window"
    sentence = SENTENCES.get(kind or "")
    if sentence is not None:
        try:
            return sentence(metrics, window, hidden)
        except (TypeError, ValueError):  # a snapshot from an older shape: the generic sentence
            pass
    if "value" not in metrics:
        return ""
    threshold = metrics.get("threshold")
    against = f" {_sign(metrics)} {number_words(threshold)}" if threshold is not None else ""
    return f"{kind or 'Measured'}: {number_words(metrics.get('value'))}{against}"
