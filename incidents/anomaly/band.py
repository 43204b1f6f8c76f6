"""The expected band of an anomaly rule's series, for the incident and loader pages to draw.

The band is not stored: ``AnomalyState`` keeps only the latest verdict. It is replayed instead, by
a fresh detector with the rule's settings over the series from ``ANOMALY_HISTORY_DAYS`` before the
first point shown, so every point of the band is what the detector expected *before* seeing it
(streaming, no look-ahead) with as much history as a new rule learns from. Approvals restart the
baseline through ``SeriesState.feed``, the engine's own step, so the band bends where the
engine's did. The replay reads only one subject's points; a long window is thinned to at most
``BAND_POINTS_MAX`` points (anomalous points always kept), so a page never carries a month of
five-minute data.

A subject whose engine state began later than this replay (a rule created last week learned from
its own ``ANOMALY_HISTORY_DAYS`` then) can differ in the first days shown; both learn the same
data after that, and their verdicts converge as the learned history is forgotten.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.text import slugify

from incidents.anomaly.detector import SeriesDetector
from incidents.anomaly.series import contract_history, series_points, source_label
from incidents.detection import rule_scope
from incidents.kinds.anomaly import Anomaly, SeriesState, detector_for, verdict_of
from incidents.models import AnomalyState, DetectionRule
from loaders.models import Loader

BAND_POINTS_MAX = 5000


class BandUnavailable(LookupError):
    """The rule is not an anomaly rule, or the subject names no loader."""


@dataclass
class Band:
    """A subject's series in ``[since, until]`` with what the detector expected at each point.

    ``points`` are ``SeriesState.feed`` verdicts (at, value, expected, expected_low, expected_high,
    score, is_anomaly, learning, seasonality); ``total`` how many there were before thinning;
    ``status`` the state after the last point ("learning", "normal" or "anomalous") and
    ``status_words`` it in a sentence."""

    rule_id: int
    subject: str
    series: str
    since: dt.datetime
    until: dt.datetime
    points: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    status: str = "learning"
    status_words: str = ""
    approvals: list[tuple[dt.datetime, int, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """For the chart: columns aligned on ``t`` (epoch seconds), None where there is no band."""
        rows = self.points
        judged = [not p["learning"] for p in rows]
        return {
            "rule": self.rule_id,
            "subject": self.subject,
            "series": self.series,
            "from": self.since.timestamp(),
            "to": self.until.timestamp(),
            "total": self.total,
            "status": self.status,
            "status_words": self.status_words,
            "t": [dt.datetime.fromisoformat(p["at"]).timestamp() for p in rows],
            "value": [p["value"] for p in rows],
            "expected": [_finite(p["expected"]) if ok else None for p, ok in zip(rows, judged, strict=True)],
            "low": [_finite(p["expected_low"]) if ok else None for p, ok in zip(rows, judged, strict=True)],
            "high": [_finite(p["expected_high"]) if ok else None for p, ok in zip(rows, judged, strict=True)],
            "score": [p["score"] for p in rows],
            "anomaly": [p["is_anomaly"] for p in rows],
            "learning": [p["learning"] for p in rows],
            "approvals": [{"t": at.timestamp(), "label": f"v{number}"} for at, number, _by in self.approvals],
        }


def anomaly_params(rule: Any) -> dict[str, Any]:
    """The rule's parameters with the kind's defaults filled in, as the engine reads them."""
    return {name: spec.default for name, spec in Anomaly.params.items()} | dict(rule.params or {})


def anomaly_band(
    rule: Any,
    subject: str,
    *,
    since: dt.datetime,
    until: dt.datetime,
    loader: Loader | None = None,
    limit: int = BAND_POINTS_MAX,
) -> Band:
    """Replay ``rule``'s detector over ``subject``'s series and return its points in ``[since, until]``.

    ``loader`` is the subject's loader when the caller has it (else it is read from the subject:
    ``CODE`` or ``CODE/key``). Raises ``BandUnavailable`` for a rule of another kind or an
    unknown loader."""
    if rule.kind != Anomaly.name:
        raise BandUnavailable(f"rule {rule.name!r} is a {rule.kind} rule, not an anomaly rule")
    if loader is None:
        loader = Loader.objects.filter(loader_code=subject.split("/", 1)[0]).first()
        if loader is None:
            raise BandUnavailable(f"no loader for subject {subject!r}")
    params = anomaly_params(rule)
    start = since - dt.timedelta(days=settings.ANOMALY_HISTORY_DAYS)
    approvals = contract_history([loader.pk], until).get(loader.pk, [])
    state = SeriesState(subject, loader.pk, detector_for(params))
    read = dict(params)
    if params.get("per") == "signal_key" and "/" in subject:
        read["signal_key"] = subject.split("/", 1)[1]  # only this key's signals, not every key's
    shown: list[dict[str, Any]] = []
    for point in series_points(read, [loader.pk], start, until):
        if point.subject != subject:
            continue
        if state.last_at is not None and point.at <= state.last_at:
            continue  # late or duplicate: the engine skips it too
        verdict = state.feed(point, approvals)
        if point.at >= since:
            shown.append(verdict_of(verdict, point.at))
    band = Band(rule.pk, subject, source_label(params), since, until, total=len(shown))
    band.points = band_thin(shown, limit)
    band.status, band.status_words = _status(state.detector, state.version_number, shown[-1] if shown else None)
    band.approvals = [(a.at, a.number, a.by) for a in approvals if since <= a.at <= until]
    return band


def band_anchor(rule_id: int, subject: str) -> str:
    """The id of a series' chart on its loader page (the incident's "series chart" link points there)."""
    return f"anomaly-{rule_id}-{slugify(subject)}"


def band_thin(points: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most about ``limit`` points, evenly spaced, keeping every anomalous one and the last."""
    if len(points) <= limit:
        return points
    anomalies = sum(1 for p in points if p["is_anomaly"])
    room = max(limit - anomalies - 1, 1)
    step = math.ceil((len(points) - anomalies) / room)
    kept = []
    normal = 0
    for index, point in enumerate(points):
        if point["is_anomaly"] or index == len(points) - 1:
            kept.append(point)
            continue
        if normal % step == 0:
            kept.append(point)
        normal += 1
    return kept


def _status(detector: SeriesDetector, version_number: int | None, last: dict[str, Any] | None) -> tuple[str, str]:
    """ "learning: 3 of 7 days of history", "learning again after version 4 was approved", "normal" or
    "anomalous" (``last``: the latest point's verdict)."""
    if detector.first_ts is None:
        return "learning", "learning: no data yet"
    if detector.learning():
        if detector.relearn_left > 0:
            done = detector.relearn_points - detector.relearn_left
            return "learning", (
                f"learning again after version {version_number} was approved: "
                f"{done} of {detector.relearn_points} new points"
            )
        span_days = ((detector.last_ts or detector.first_ts) - detector.first_ts) / 86400.0
        need_days = detector.min_span_hours / 24.0
        if detector.points < detector.min_points and span_days >= need_days:
            return "learning", f"learning: {detector.points} of {detector.min_points} points"
        return "learning", f"learning: {math.floor(span_days):g} of {need_days:g} days of history"
    if not last:
        return "normal", "normal; no value in this window"
    if last["is_anomaly"]:
        return "anomalous", f"anomalous: the last value is outside the expected range (score {last['score']:.2f})"
    return "normal", "normal: the last value is inside the expected range"


# --- the loader page: the anomaly series that watch a loader ------------------------------------------


@dataclass
class SeriesCard:
    """One anomaly series of a loader, as its loader page lists it (the chart comes from ``anomaly_band``)."""

    rule_id: int
    rule_name: str
    subject: str
    series: str
    anchor: str
    status: str
    status_words: str


def loader_anomaly_series(loader: Loader) -> list[SeriesCard]:
    """The series of the enabled anomaly rules whose scope holds ``loader``, each with the engine's
    current state (its ``AnomalyState``; "not evaluated yet" before the rule first ran for it)."""
    cards = []
    for rule in DetectionRule.objects.filter(kind=Anomaly.name, enabled=True).order_by("name", "pk"):
        if not rule_scope(rule).filter(pk=loader.pk).exists():
            continue
        params = anomaly_params(rule)
        states = {s.subject: s for s in AnomalyState.objects.filter(rule=rule, loader=loader).order_by("subject")}
        subjects = list(states) or ([] if params.get("per") == "signal_key" else [loader.loader_code])
        for subject in subjects:
            status, words = "learning", "not evaluated yet"
            if (row := states.get(subject)) is not None:
                try:
                    detector = SeriesDetector.from_dict(row.detector)
                except (ValueError, KeyError, TypeError):
                    detector = None  # an older format: the engine learns it again at its next run
                if detector is not None:
                    status, words = _status(detector, row.version_number, row.verdict or None)
            cards.append(
                SeriesCard(
                    rule.pk, rule.name, subject, source_label(params), band_anchor(rule.pk, subject), status, words
                )
            )
    return cards


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
