"""The ``anomaly`` rule kind: a learned baseline per series instead of a hand-set threshold.

Each subject of the rule (a loader, or a loader and signal key) has a ``SeriesDetector`` whose
state is kept in ``AnomalyState``. An evaluation feeds the detector only the points that arrived
since its last one (incremental: the baseline is never refitted from the whole history), and
measures the latest verdict: the observed value, the expected range, the score and the
seasonality in use. A subject seen for the first time is learned from the last
``ANOMALY_HISTORY_DAYS`` of its series first, so a new rule is useful at once where history exists,
and stays in its *learning* state (never breached) where it does not.

Known change points: an approved loader version that changed the schedule, expected rows or
maximum duration restarts the baseline at its approval, so the new normal is learned instead of
alarming for days; an anomaly that begins within ``ANOMALY_APPROVAL_NOTE_MINUTES`` of any approval
says which version, approved by whom, so the person on call looks there first.

Missing data: when a subject that had a steady rhythm sends nothing for ``missing_after`` times its
usual gap, that is a breach of its own ("no new value for 5 h, usually every 1 h").

In a backtest (``incidents.kinds.replay``) the states live in memory and the points of the
whole replay are read once; the decisions are the same as the engine's at the same moments.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from etl_monitor.humanize import duration_words
from incidents.anomaly.detector import Direction, Point, Sensitivity, SeriesDetector
from incidents.anomaly.series import SOURCES, Approval, SeriesPoint, contract_history, series_points, source_label
from incidents.kinds import Measurement, Param, Replay, RuleKind, kind_register, replay_current
from incidents.models import AnomalyState
from loaders.models import Loader

SEASONALITIES = ("auto", "none", "daily", "weekly")
# A subject whose usual gap is unknown (fewer points) is never judged missing; nor before this.
MISSING_MIN_SECONDS = 3600.0
GAP_MEMORY = 0.1  # weight of the newest gap in the usual-gap average


@dataclass
class SeriesState:
    """One subject's working state during an evaluation (loaded from and saved to AnomalyState)."""

    subject: str
    loader_id: int
    detector: SeriesDetector
    verdict: dict[str, Any] = field(default_factory=dict)
    last_at: dt.datetime | None = None
    gap_seconds: float | None = None
    version_number: int | None = None
    pk: int | None = None
    changed: bool = False
    # The measurement of the current verdict, reused while neither it nor the missing-data state
    # changes (a backtest measures every subject at every tick; most ticks bring nothing new).
    measured: tuple[int, Measurement] | None = None
    verdicts: int = 0  # how many times the verdict was replaced: the key of ``measured``

    def feed(self, point: SeriesPoint, approvals: list[Approval]) -> Point:
        """Score and learn one point, restarting the baseline first at a contract-changing
        approval that falls between the previous point and this one."""
        last = self.last_at
        if last is not None:
            for approval in approvals:
                # Before the first point there is nothing learned to restart.
                if approval.changed and last < approval.at <= point.at:
                    self.detector.restart(approval.at)
                    self.version_number = approval.number
            gap = (point.at - last).total_seconds()
            usual = self.gap_seconds
            self.gap_seconds = gap if usual is None else (1 - GAP_MEMORY) * usual + GAP_MEMORY * gap
        self.last_at = point.at
        self.changed = True
        return self.detector.update(point.at, point.value)


def verdict_of(point: Point, at: dt.datetime) -> dict[str, Any]:
    """A detector's verdict on a point as stored in AnomalyState.verdict (JSON)."""
    return {
        "at": at.isoformat(),
        "value": point.value,
        "expected": point.expected,
        "expected_low": point.expected_low,
        "expected_high": point.expected_high,
        "score": round(point.score, 4),
        "is_anomaly": point.is_anomaly,
        "learning": point.learning,
        "seasonality": point.seasonality,
    }


def detector_for(params: dict[str, Any]) -> SeriesDetector:
    """A fresh detector with the rule's settings."""
    return SeriesDetector(
        sensitivity=params.get("sensitivity", Sensitivity.MEDIUM),
        direction=params.get("direction", Direction.BOTH),
        seasonality=params.get("seasonality", "auto"),
        min_points=params.get("min_points", 24),
        min_span_hours=params.get("min_history_days", 7) * 24.0,
    )


def _same_settings(detector: SeriesDetector, fresh: SeriesDetector) -> bool:
    return (detector.sensitivity, detector.direction, detector.seasonality, detector.min_points) == (
        fresh.sensitivity,
        fresh.direction,
        fresh.seasonality,
        fresh.min_points,
    ) and detector.min_span_hours == fresh.min_span_hours


# --- where states and points come from: the database, or a replay ------------------------------------


class _Store:
    """The engine's: states in AnomalyState, points read from the database at each evaluation."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def load(self, params: dict[str, Any]) -> dict[str, SeriesState]:
        fresh = detector_for(params)
        states: dict[str, SeriesState] = {}
        for row in AnomalyState.objects.filter(rule_id=self.rule.pk):
            try:
                detector = SeriesDetector.from_dict(row.detector)
            except (ValueError, KeyError, TypeError):
                detector = None  # an older format: learned again from the history
            if detector is None or not _same_settings(detector, fresh):
                # The rule's settings changed (or the format did): learn again with the new ones.
                states[row.subject] = SeriesState(row.subject, row.loader_id or 0, detector_for(params), pk=row.pk)
                continue
            states[row.subject] = SeriesState(
                row.subject,
                row.loader_id or 0,
                detector,
                verdict=row.verdict,
                last_at=row.last_at,
                gap_seconds=row.gap_seconds,
                version_number=row.version_number,
                pk=row.pk,
            )
        return states

    def points(
        self, params: dict[str, Any], loaders: QuerySet[Loader], since: dt.datetime, now: dt.datetime
    ) -> Iterable[SeriesPoint]:
        return series_points(params, loaders, since, now)

    def approvals(self, loaders: QuerySet[Loader], now: dt.datetime) -> dict[int, list[Approval]]:
        return contract_history(loaders, now)

    def scope_ids(self, loaders: QuerySet[Loader]) -> set[int]:
        """The loaders watched now (a paused loader's series is kept, not measured)."""
        return set(loaders.values_list("pk", flat=True))

    def save(self, states: dict[str, SeriesState]) -> None:
        changed = [s for s in states.values() if s.changed]
        if not changed:
            return
        rows = [
            AnomalyState(
                rule_id=self.rule.pk,
                subject=s.subject,
                loader_id=s.loader_id or None,
                detector=s.detector.to_dict(),
                verdict=s.verdict,
                last_at=s.last_at,
                gap_seconds=s.gap_seconds,
                version_number=s.version_number,
            )
            for s in changed
        ]
        # One INSERT … ON CONFLICT DO UPDATE per batch: far cheaper to build than bulk_update's
        # CASE per row and field, which cost seconds for a thousand states.
        moment = dt.datetime.now(dt.UTC)
        for row in rows:
            row.updated_at = moment
        AnomalyState.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["rule", "subject"],
            update_fields=["loader", "detector", "verdict", "last_at", "gap_seconds", "version_number", "updated_at"],
        )


class _ReplayStore(_Store):
    """A backtest's: states in memory, and every point of the replay read once, then sliced."""

    def __init__(self, rule: Any, replay: Replay) -> None:
        super().__init__(rule)
        self.replay = replay
        self.memory = replay.store.setdefault(("anomaly", rule.pk), {})

    def load(self, params: dict[str, Any]) -> dict[str, SeriesState]:
        return self.memory.setdefault("states", {})

    def _all(self, params: dict[str, Any], loaders: QuerySet[Loader]) -> tuple[list[float], list[SeriesPoint]]:
        if "points" not in self.memory:
            since = self.replay.start - dt.timedelta(days=settings.ANOMALY_HISTORY_DAYS)
            points = list(series_points(params, loaders, since, self.replay.end))
            self.memory["points"] = ([p.at.timestamp() for p in points], points)
        return self.memory["points"]

    def points(
        self, params: dict[str, Any], loaders: QuerySet[Loader], since: dt.datetime, now: dt.datetime
    ) -> Iterable[SeriesPoint]:
        stamps, points = self._all(params, loaders)
        # Points up to the previous evaluation were all offered then (the replay's points never
        # arrive late), so each series' last point already covers them: offered again they would only
        # be skipped. Without this, one series that stops makes every later evaluation re-read all
        # points since its last one (up to ANOMALY_HISTORY_DAYS of every series).
        offered = self.memory.get("offered_until", float("-inf"))
        low = bisect.bisect_right(stamps, max(since.timestamp(), offered))
        high = bisect.bisect_right(stamps, now.timestamp())
        self.memory["offered_until"] = max(offered, now.timestamp())
        return points[low:high]

    def approvals(self, loaders: QuerySet[Loader], now: dt.datetime) -> dict[int, list[Approval]]:
        if "approvals" not in self.memory:
            self.memory["approvals"] = contract_history(loaders, self.replay.end)
        known: dict[int, list[Approval]] = self.memory["approvals"]
        return {loader_id: [a for a in approvals if a.at <= now] for loader_id, approvals in known.items()}

    def scope_ids(self, loaders: QuerySet[Loader]) -> set[int]:
        if "scope" not in self.memory:
            self.memory["scope"] = super().scope_ids(loaders)
        return self.memory["scope"]

    def save(self, states: dict[str, SeriesState]) -> None:
        for state in states.values():
            state.changed = False


# --- the kind ------------------------------------------------------------------------------------------


@kind_register
class Anomaly(RuleKind):
    """A value outside the range its own history predicts (seasonality, trend and level shifts
    learned per series; no threshold to set)."""

    name = "anomaly"
    description = "A value outside the range the series' own history predicts (learned baseline, no threshold)."
    self_deciding = True
    params = {
        "source": Param(str, default="rows_written", choices=tuple(SOURCES), help="The series to watch."),
        "signal_key": Param(str, help="With source=signal: signals with this key."),
        "metric_type": Param(str, help="With source=signal: or signals of this metric type."),
        "per": Param(
            str,
            default="loader",
            choices=("loader", "signal_key"),
            help="One series per loader, or per loader and signal key (LOADER/key).",
        ),
        "direction": Param(str, default="both", choices=tuple(d.value for d in Direction), help="Which side alarms."),
        "sensitivity": Param(
            str, default="medium", choices=tuple(s.value for s in Sensitivity), help="How unusual a value must be."
        ),
        "seasonality": Param(str, default="auto", choices=SEASONALITIES, help="auto: detected from the history."),
        "min_points": Param(int, default=24, help="Points the series needs before it may fire."),
        "min_history_days": Param(int, default=7, help="Days of history the series needs before it may fire."),
        "missing_after": Param(
            float, default=3.0, help="No new value for this many usual gaps is a breach (0: never)."
        ),
    }

    def check(self, params: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
        source = params.get("source", "rows_written")
        if source == "signal" and not params.get("signal_key") and not params.get("metric_type"):
            errors["params.signal_key"] = ["With source signal, give signal_key or metric_type."]
        if source != "signal":
            for name in ("signal_key", "metric_type"):
                if params.get(name):
                    errors[f"params.{name}"] = [f"Only with source signal (this rule watches {source})."]
            if params.get("per") == "signal_key":
                errors["params.per"] = ["Per signal key only with source signal."]
        if params.get("min_points", 24) < 2:
            errors["params.min_points"] = ["At least 2."]
        if params.get("min_history_days", 7) < 0:
            errors["params.min_history_days"] = ["Zero or more."]
        if params.get("missing_after", 3.0) < 0:
            errors["params.missing_after"] = ["Zero (never) or more."]
        return params

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        replay = replay_current()
        store = _ReplayStore(rule, replay) if replay is not None else _Store(rule)
        params = {name: spec.default for name, spec in self.params.items()} | dict(rule.params or {})
        states = store.load(params)
        history = now - dt.timedelta(days=settings.ANOMALY_HISTORY_DAYS)
        known = {s.loader_id for s in states.values() if s.last_at is not None}
        lasts = [s.last_at for s in states.values() if s.last_at is not None]
        since = max(min(lasts), history) if lasts else history
        approvals = store.approvals(loaders, now)
        newest: dict[str, tuple[Point, dt.datetime]] = {}
        learned: set[str] = set()  # series learned from their history now: that history is not news
        no_approvals: list[Approval] = []
        for point in self._due(store, params, loaders, states, known, since, history, now):
            state = states.get(point.subject)
            if state is None or state.last_at is None:
                if state is None:
                    state = states[point.subject] = SeriesState(point.subject, point.loader_id, detector_for(params))
                learned.add(point.subject)
            elif point.at <= state.last_at:
                continue  # late or duplicate: the detector never goes back
            verdict = state.feed(point, approvals.get(point.loader_id, no_approvals))
            worst = newest.get(point.subject)
            if worst is None or not worst[0].is_anomaly or point.subject in learned or verdict.is_anomaly:
                # The latest point, unless an earlier point that arrived since the last evaluation
                # was anomalous (of a series learned from its history now, only the latest counts).
                newest[point.subject] = (verdict, point.at)
        for subject, (verdict, at) in newest.items():
            states[subject].verdict = verdict_of(verdict, at)
            states[subject].verdicts += 1
        scope = store.scope_ids(loaders)
        measurements = []
        for state in states.values():
            if not state.verdict or state.loader_id not in scope:
                continue
            missing = self._missing(params, state, now)
            cached = state.measured
            if cached is not None and cached[0] == state.verdicts and not missing:
                measurements.append(cached[1])
                continue
            m = self._measure(params, state, approvals.get(state.loader_id, []), now, missing=missing)
            state.measured = (state.verdicts, m) if m.details.get("missing_for_seconds") is None else None
            measurements.append(m)
        store.save(states)
        return measurements

    @staticmethod
    def _due(
        store: _Store,
        params: dict[str, Any],
        loaders: QuerySet[Loader],
        states: dict[str, SeriesState],
        known: set[int],
        since: dt.datetime,
        history: dt.datetime,
        now: dt.datetime,
    ) -> Iterable[SeriesPoint]:
        """The points to feed at ``now``: of series already known, those after ``since`` (their
        own last point filters the rest); of loaders never seen, their last ANOMALY_HISTORY_DAYS."""
        if since > history and (fresh := sorted(store.scope_ids(loaders) - known)):
            for point in store.points(params, fresh, history, since):
                if point.loader_id not in known:
                    yield point
        yield from store.points(params, loaders, since, now)

    @staticmethod
    def _measure(
        params: dict[str, Any], state: SeriesState, approvals: list[Approval], now: dt.datetime, *, missing: bool
    ) -> Measurement:
        verdict = state.verdict
        label = source_label(params)
        details: dict[str, Any] = {
            "kind": "anomaly",
            "source": params.get("source"),
            "series": label,
            "observed": verdict["value"],
            "expected": verdict["expected"],
            "expected_low": verdict["expected_low"],
            "expected_high": verdict["expected_high"],
            "score": verdict["score"],
            "seasonality": verdict["seasonality"],
            "learning": verdict["learning"],
            "sensitivity": params.get("sensitivity"),
            "direction": params.get("direction"),
            "point_at": verdict["at"],
        }
        m = Measurement(state.subject, verdict["value"], loader_id=state.loader_id, details=details)
        m.breached = bool(verdict["is_anomaly"])
        # The words for messages ("{subject}: {series} {headline}") only where a message is written:
        # a clear measurement is never rendered, and a backtest makes hundreds of thousands of them.
        if m.breached:
            at = dt.datetime.fromisoformat(verdict["at"])
            expected_range = f"{number_words(verdict['expected_low'])}–{number_words(verdict['expected_high'])}"
            details["expected_range"] = expected_range
            details["headline"] = f"{number_words(verdict['value'])}, expected {expected_range}"
            m.summary = (
                f"{label} was {number_words(verdict['value'])} at {at:%Y-%m-%d %H:%M} UTC, expected "
                f"{expected_range} (score {verdict['score']:.2f}, {verdict['seasonality']} seasonality)"
            )
        elif missing:
            silent = (now - state.last_at).total_seconds()  # type: ignore[operator]
            m.breached = True
            m.value = None
            details["missing_for_seconds"] = round(silent)
            details["usual_gap_seconds"] = round(state.gap_seconds or 0)
            at = now
            details["expected_range"] = (
                f"{number_words(verdict['expected_low'])}–{number_words(verdict['expected_high'])}"
            )
            details["headline"] = f"missing for {duration_words(silent)}"
            m.summary = (
                f"no new {label} for {duration_words(silent)} (usually every {duration_words(state.gap_seconds or 0)})"
            )
        if m.breached and (note := approval_note(approvals, at)) is not None:
            details["after_version"] = note
            m.summary += (
                f"; began {note['minutes']} minutes after version {note['number']} was approved by {note['by']}"
            )
        return m

    @staticmethod
    def _missing(params: dict[str, Any], state: SeriesState, now: dt.datetime) -> bool:
        factor = params.get("missing_after", 3.0)
        if not factor or state.gap_seconds is None or state.last_at is None or state.detector.learning():
            return False
        return (now - state.last_at).total_seconds() > max(factor * state.gap_seconds, MISSING_MIN_SECONDS)


def approval_note(approvals: list[Approval], at: dt.datetime) -> dict[str, Any] | None:
    """The approval an anomaly began shortly after (within ANOMALY_APPROVAL_NOTE_MINUTES), if any."""
    latest = None
    for approval in approvals:
        if approval.at <= at:
            latest = approval
    if latest is None:
        return None
    minutes = int((at - latest.at).total_seconds() // 60)
    if minutes > settings.ANOMALY_APPROVAL_NOTE_MINUTES:
        return None
    return {
        "number": latest.number,
        "version_id": latest.version_id,
        "by": latest.by,
        "approved_at": latest.at.isoformat(),
        "minutes": minutes,
        "changed": list(latest.changed),
    }


def number_words(value: float | None) -> str:
    """A value as titles and evidence write it: 13,502 or 0.25."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
