"""An anomaly incident's evidence in words, for its page: what was seen against what was expected.

The incident's ``metrics`` (written by ``incidents.kinds.anomaly``) hold the numbers; this turns
them into the lines of the page's Evidence panel, so the page template only lays them out. The
window the panel's chart shows is decided here too (``evidence_window``), so the chart endpoint
and the page agree on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.utils.dateparse import parse_datetime

from etl_monitor.humanize import duration_words
from incidents.anomaly.detector import SENSITIVITY_SCORE
from incidents.kinds.anomaly import number_words as number  # the title's way of writing a value

# The chart around an incident: a week of normal before it, a little after it ended, and never
# more than a month after it began (an incident open for a quarter still draws in a second).
BEFORE = dt.timedelta(days=7)
AFTER = dt.timedelta(hours=12)
LONGEST = dt.timedelta(days=30)

CONTRACT_FIELD_WORDS = {
    "schedule_cron": "schedule",
    "schedule_timezone": "time zone",
    "max_duration_minutes": "maximum duration",
    "expected_rows_min": "expected rows (minimum)",
    "expected_rows_max": "expected rows (maximum)",
}


@dataclass
class Evidence:
    """The lines of the Evidence panel (None: the line is left out)."""

    series: str
    missing: str | None = None
    observed: str | None = None
    expected_range: str | None = None
    expected: str | None = None
    point_at: dt.datetime | None = None
    score: str | None = None
    seasonality: str | None = None
    direction: str | None = None
    learning: str | None = None
    version: dict[str, Any] | None = None
    version_changed: list[str] = field(default_factory=list)


def anomaly_evidence(metrics: dict[str, Any], *, hidden: set[str]) -> Evidence | None:
    """The evidence of an anomaly incident's snapshot; None for any other snapshot.

    ``hidden`` are the contract fields the reader may not read: an approval that changed them
    says only that it changed something."""
    if not isinstance(metrics, dict) or metrics.get("kind") != "anomaly":
        return None
    evidence = Evidence(series=str(metrics.get("series") or metrics.get("source") or "the series"))
    if "missing_for_seconds" in metrics:
        evidence.missing = (
            f"no new {evidence.series} for {duration_words(metrics['missing_for_seconds'])}, "
            f"usually every {duration_words(metrics.get('usual_gap_seconds') or 0)}"
        )
    else:
        evidence.observed = number(metrics.get("observed"))
        evidence.point_at = parse_datetime(str(metrics.get("point_at") or ""))
    if metrics.get("expected_low") is not None:
        evidence.expected_range = f"{number(metrics['expected_low'])} – {number(metrics['expected_high'])}"
        evidence.expected = number(metrics.get("expected"))
    sensitivity = str(metrics.get("sensitivity") or "")
    if metrics.get("score") is not None:
        threshold = SENSITIVITY_SCORE.get(sensitivity)
        limit = f" (fires at {threshold:.2f} or more: {sensitivity} sensitivity)" if threshold is not None else ""
        evidence.score = f"{float(metrics['score']):.2f} of 1{limit}"
    if metrics.get("seasonality"):
        evidence.seasonality = {
            "none": "none (no daily or weekly pattern)",
            "daily": "daily (by hour of day)",
            "weekly": "weekly (by hour of the week)",
        }.get(metrics["seasonality"], str(metrics["seasonality"]))
    evidence.direction = {"up": "higher than expected", "down": "lower than expected", "both": "either way"}.get(
        str(metrics.get("direction") or "")
    )
    evidence.learning = "still learning (it could not fire yet)" if metrics.get("learning") else "learned"
    note = metrics.get("after_version")
    if isinstance(note, dict) and note.get("number") is not None:
        evidence.version = note
        changed = [f for f in note.get("changed") or [] if f not in hidden]
        evidence.version_changed = [CONTRACT_FIELD_WORDS.get(f, f.replace("_", " ")) for f in changed]
    return evidence


def evidence_window(
    first_seen: dt.datetime, ended: dt.datetime | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """From a week before the incident began to a little after it ended (or now)."""
    until = min(now, (ended or now) + AFTER, first_seen + LONGEST)
    return first_seen - BEFORE, max(until, first_seen)
