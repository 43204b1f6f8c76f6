"""Backtest a rule: what it would have opened over the last N days, without writing anything.

The rule's kind measures its scope at ticks ``start + k × step`` up to now, inside
``incidents.kinds.replay`` (kinds with state — the anomaly detectors — keep it in memory and read
the replay's points once), and each tick's measurements go through ``_Simulator``: the engine's
per-subject decisions (``detection._rule_decide`` and ``_decide``) held in memory — hysteresis
(``open_after``), episodes, resolve after ``resolve_after_seconds`` clear, reopen within
``INCIDENT_REOPEN_SECONDS``, flapping. It is the engine as it would have run on that clock with
nobody acting: no acknowledgement, no person's resolve or close. Silences are ignored — they only
keep an incident from being notified, never from opening.

The step is the rule's interval, unless that makes more than ``BACKTEST_MAX_EVALUATIONS`` ticks:
then the step grows to fit, and the result says so (a coarser clock can miss short breaches).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from etl_monitor.errors import InvalidInput
from etl_monitor.humanize import duration_words
from etl_monitor.permissions import permission_require
from incidents.detection import KindMissing, compare, rule_scope
from incidents.kinds import Measurement, SourceUnavailable, kind_get, replay
from incidents.models import DetectionRule, Operator, Scope
from incidents.services import rule_check
from loaders.models import Loader

MAX_DAYS = 90
# One evaluation costs about what measuring this many loaders does, whatever the scope (its queries,
# the replay's bookkeeping): measured on PostgreSQL, 2.8 ms a tick + 0.07 ms a loader (docs/benchmarks.md).
EVALUATION_COST = 40


@dataclass
class WouldBeIncident:
    """One incident the rule would have opened: from its first breach to its (last) resolution."""

    subject: str
    loader_id: int | None
    start: dt.datetime
    end: dt.datetime | None = None  # None: still open at the end of the backtest
    peak: float | None = None  # the most extreme value measured while it was open
    peak_score: float | None = None  # anomaly rules: the highest score while it was open
    peak_at: dt.datetime | None = None
    occurrences: int = 1  # as the engine counts them: new breaches, reopens included
    reopened: int = 0
    flapping: bool = False
    last_seen: dt.datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds()


@dataclass
class Backtest:
    """The result: every would-be incident in order of start, and how many per subject."""

    rule: str
    start: dt.datetime
    end: dt.datetime
    step_seconds: int
    evaluations: int
    incidents: list[WouldBeIncident] = field(default_factory=list)
    per_subject: dict[str, int] = field(default_factory=dict)
    subjects_measured: int = 0
    errors: list[str] = field(default_factory=list)  # ticks whose evaluation failed (first few)
    notes: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the API's and the command's ``--json`` answer)."""
        return {
            "rule": self.rule,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "step_seconds": self.step_seconds,
            "evaluations": self.evaluations,
            "subjects_measured": self.subjects_measured,
            "incidents": [
                {
                    "subject": i.subject,
                    "loader_id": i.loader_id,
                    "start": i.start.isoformat(),
                    "end": i.end.isoformat() if i.end else None,
                    "duration_seconds": i.duration_seconds,
                    "peak": i.peak,
                    "peak_score": i.peak_score,
                    "peak_at": i.peak_at.isoformat() if i.peak_at else None,
                    "occurrences": i.occurrences,
                    "reopened": i.reopened,
                    "flapping": i.flapping,
                }
                for i in self.incidents
            ],
            "per_subject": self.per_subject,
            "errors": self.errors,
            "notes": self.notes,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backtest:
        """The result ``as_dict`` gave (a background job's stored result), to show as an inline one is."""
        when = dt.datetime.fromisoformat
        incidents = [
            WouldBeIncident(
                subject=i["subject"],
                loader_id=i["loader_id"],
                start=when(i["start"]),
                end=when(i["end"]) if i["end"] else None,
                peak=i["peak"],
                peak_score=i["peak_score"],
                peak_at=when(i["peak_at"]) if i["peak_at"] else None,
                occurrences=i["occurrences"],
                reopened=i["reopened"],
                flapping=i["flapping"],
            )
            for i in data["incidents"]
        ]
        return cls(
            rule=data["rule"],
            start=when(data["start"]),
            end=when(data["end"]),
            step_seconds=data["step_seconds"],
            evaluations=data["evaluations"],
            incidents=incidents,
            per_subject=dict(data["per_subject"]),
            subjects_measured=data["subjects_measured"],
            errors=list(data["errors"]),
            notes=list(data["notes"]),
            elapsed_seconds=data["elapsed_seconds"],
        )


def backtest_days_check(days: Any) -> int:
    """``days`` as a whole number of days in 1..MAX_DAYS, or InvalidInput naming ``days``."""
    if isinstance(days, bool) or not isinstance(days, int | str):
        raise InvalidInput({"days": [f"A whole number of days from 1 to {MAX_DAYS}."]})
    try:
        value = int(days)
    except ValueError:
        raise InvalidInput({"days": [f"A whole number of days from 1 to {MAX_DAYS}."]}) from None
    if not 1 <= value <= MAX_DAYS:
        raise InvalidInput({"days": [f"From 1 to {MAX_DAYS} days (got {value})."]})
    return value


def backtest_step(interval_seconds: int, span_seconds: float) -> int:
    """The rule's interval, or the smallest whole minute that keeps the ticks within
    BACKTEST_MAX_EVALUATIONS (the first tick included)."""
    cap = max(2, settings.BACKTEST_MAX_EVALUATIONS)
    step = max(1, interval_seconds)
    if span_seconds / step + 1 <= cap:
        return step
    return math.ceil(span_seconds / (cap - 1) / 60) * 60


def backtest_evaluations(rule: DetectionRule, days: int) -> int:
    """How many ticks a backtest of ``rule`` over ``days`` evaluates (the first one included)."""
    span = dt.timedelta(days=days).total_seconds()
    return int(span // backtest_step(rule.interval_seconds or 60, span)) + 1


def backtest_size(rule: DetectionRule, days: Any, scope_loader_ids: Iterable[int] | None = None) -> int:
    """The work a backtest would do, before doing it: (loaders in scope + EVALUATION_COST) × evaluations.

    A cheap count (one query); BACKTEST_INLINE_MAX compares it to decide whether the backtest runs
    while the user waits or on the worker. Subjects that are not loaders (a source's series) are
    not counted: the loaders in scope are the best estimate there is before measuring.
    """
    loaders = _scope(rule, scope_loader_ids).count()
    return (loaders + EVALUATION_COST) * backtest_evaluations(rule, backtest_days_check(days))


def rule_backtest(
    *,
    rule: DetectionRule,
    days: Any,
    now: dt.datetime | None = None,
    scope_loader_ids: Iterable[int] | None = None,
) -> Backtest:
    """What ``rule`` would have opened over the ``days`` before ``now``: see the module docstring.

    ``rule`` may be a draft (not saved, validated by ``services.rule_check``): its listed loaders
    (scope LOADERS) are then ``scope_loader_ids``, which also replace a saved rule's list when given.
    Nothing is written: not the incidents, not the subject states, not the anomaly baselines.
    """
    days = backtest_days_check(days)
    try:
        kind = kind_get(rule.kind)
    except InvalidInput as exc:
        raise InvalidInput({"kind": exc.errors["kind"]}) from None
    began = time.perf_counter()
    end = (now or timezone.now()).replace(microsecond=0)
    start = end - dt.timedelta(days=days)
    span = (end - start).total_seconds()
    step = backtest_step(rule.interval_seconds or 60, span)
    ticks = [start + dt.timedelta(seconds=k * step) for k in range(backtest_evaluations(rule, days))]
    result = Backtest(rule=rule.name, start=start, end=end, step_seconds=step, evaluations=len(ticks))
    if step != rule.interval_seconds:
        result.notes.append(
            f"Evaluated every {duration_words(step)} instead of the rule's {duration_words(rule.interval_seconds)}, "
            f"to stay within {settings.BACKTEST_MAX_EVALUATIONS} evaluations: breaches shorter than that may be missed."
        )
    else:
        result.notes.append(f"Evaluated every {duration_words(step)}, as the rule is.")
    scope = _scope(rule, scope_loader_ids)
    simulator = _Simulator(rule)
    failed = 0
    with replay(start, end):
        for tick in ticks:
            measured = kind.evaluate_many([rule], lambda _rule: scope, tick).get(rule.pk)
            if isinstance(measured, list):
                simulator.tick(measured, tick)
                continue
            failed += 1
            why = measured if isinstance(measured, BaseException) else KindMissing("no measurements")
            if len(result.errors) < 5:
                result.errors.append(f"{tick.isoformat()}: {type(why).__name__}: {str(why)[:200]}")
            if isinstance(why, SourceUnavailable):
                simulator.tick([], tick)  # as the engine: an unreachable source measured nothing, so no breach
            # any other failure: the engine decides nothing at that tick either
    if failed:
        result.notes.append(f"{failed} of {len(ticks)} evaluations failed (the first errors are listed).")
    result.incidents = sorted(simulator.incidents, key=lambda i: (i.start, i.subject))
    for incident in result.incidents:
        result.per_subject[incident.subject] = result.per_subject.get(incident.subject, 0) + 1
    result.subjects_measured = len(simulator.measured)
    result.elapsed_seconds = time.perf_counter() - began
    return result


def rule_draft_backtest(
    *, user: Any, data: dict[str, Any], days: Any, rule: DetectionRule | None = None, now: dt.datetime | None = None
) -> Backtest:
    """Backtest a rule as ``data`` would make it — a new rule, or ``rule`` changed — without saving it.

    ``data`` is validated as ``services.rule_save`` validates it (InvalidInput naming every bad
    field); a draft of a new rule needs the permission to add rules, one of changes to a rule the
    permission to change it. A draft without a name is named after the rule it changes, or "draft".
    """
    draft, scope_ids = rule_draft_check(user=user, data=data, rule=rule)
    return rule_backtest(rule=draft, days=days, now=now, scope_loader_ids=scope_ids)


def rule_draft_check(
    *, user: Any, data: dict[str, Any], rule: DetectionRule | None = None
) -> tuple[DetectionRule, list[int] | None]:
    """The draft ``data`` makes of a new rule or of ``rule`` (unsaved), and its listed loaders' ids
    (None: the rule's own): ``rule_draft_backtest``'s permission and validation, for its job too."""
    perm = "incidents.change_detectionrule" if rule is not None else "incidents.add_detectionrule"
    permission_require(user, perm, "backtest rule drafts")
    data = dict(data)
    data.setdefault("name", rule.name if rule is not None else "draft")
    probe = DetectionRule.objects.get(pk=rule.pk) if rule is not None else None
    draft, loaders = rule_check(data=data, rule=probe)
    return draft, [loader.pk for loader in loaders] if loaders is not None else None


def _scope(rule: DetectionRule, scope_loader_ids: Iterable[int] | None) -> QuerySet[Loader]:
    """The loaders the rule watches (``detection.rule_scope``) — for a draft, its listed loaders."""
    if rule.scope == Scope.LOADERS and scope_loader_ids is None and rule.pk is None:
        raise InvalidInput({"scope_loaders": ["A loader scope needs at least one loader."]})
    return rule_scope(rule, scope_loader_ids)


# --- the engine's decisions, in memory ---------------------------------------------------------------


@dataclass
class _State:
    """A subject's RuleSubjectState, with its incident (active or the last one resolved)."""

    breaches: int = 0  # consecutive_breaches, up to open_after
    clear_since: dt.datetime | None = None
    episode: str = ""
    transitions: list[dt.datetime] = field(default_factory=list)
    incident: WouldBeIncident | None = None

    @property
    def active(self) -> bool:
        return self.incident is not None and self.incident.end is None


class _Simulator:
    """``detection._rule_decide`` for one rule, on states in memory (see the module docstring).

    Each branch names the engine's: a clear subject with nothing pending costs one dict lookup.
    """

    def __init__(self, rule: DetectionRule) -> None:
        self.rule = rule
        self.open_after = rule.open_after
        self.resolve_after = rule.resolve_after_seconds
        self.reopen = dt.timedelta(seconds=settings.INCIDENT_REOPEN_SECONDS)
        self.flap_window = dt.timedelta(seconds=settings.INCIDENT_FLAP_WINDOW_SECONDS)
        self.flap_threshold = settings.INCIDENT_FLAP_THRESHOLD
        self.lowest = rule.operator in (Operator.LT, Operator.LTE)  # which way a value is "more extreme"
        self.states: dict[str, _State] = {}
        self.incidents: list[WouldBeIncident] = []
        self.measured: set[str] = set()

    def tick(self, measurements: list[Measurement], now: dt.datetime) -> None:
        rule, states = self.rule, self.states
        seen = set()
        for m in measurements:
            seen.add(m.subject)
            breached = m.breached if m.breached is not None else compare(m.value, rule.operator, rule.threshold)
            state = states.get(m.subject)
            settled = state is None or (state.breaches == 0 and state.clear_since is not None and not state.active)
            if not breached and settled:
                continue  # "clear": the engine writes nothing either
            if state is None:
                state = states[m.subject] = _State()
            if breached:
                self._breach(m, state, now)
            else:
                self._clear(state, now)
        self.measured |= seen
        # Subjects that fired before but produced no measurement now are clear (no data, no breach).
        for subject in states.keys() - seen:
            state = states[subject]
            if (state.breaches == 0 and state.clear_since is not None) and not state.active:
                continue
            self._clear(state, now)

    def _episode(self, m: Measurement, state: _State, now: dt.datetime) -> str:
        """``detection._episode_of``."""
        if m.episode is not None:
            return m.episode[:300]
        if state.episode and state.breaches > 0 and state.clear_since is None:
            return state.episode
        return f"since:{now.isoformat()}"

    def _breach(self, m: Measurement, state: _State, now: dt.datetime) -> None:
        """``_decide`` with a breach (the engine's shortcuts — held, ongoing, chunked opens — decide the same)."""
        episode = self._episode(m, state, now)
        new_breach = episode != state.episode
        fired = not new_breach and state.breaches >= self.open_after and state.clear_since is None
        if state.breaches < self.open_after or state.clear_since is not None or new_breach:
            state.breaches = min(state.breaches + 1, self.open_after)
            state.clear_since = None
            state.episode = episode
        if not state.active:
            if state.breaches < self.open_after or fired:
                return  # pending, or held: the breach its incident was about waits for a new one
            self._fire_inactive(m, state, now)
            return
        incident = state.incident
        assert incident is not None
        if not fired:
            incident.occurrences += 1  # refired: a new breach of the open incident
        incident.last_seen = now
        self._peak(incident, m, now)

    def _fire_inactive(self, m: Measurement, state: _State, now: dt.datetime) -> None:
        """``incident_fire`` without an active incident: reopen one resolved recently, or open."""
        last = state.incident
        if last is not None and last.end is not None and last.end >= now - self.reopen:
            last.end = None
            last.occurrences += 1
            last.reopened += 1
            last.last_seen = now
            if self._transition(state, now) >= self.flap_threshold:
                last.flapping = True
            self._peak(last, m, now)
            return
        incident = WouldBeIncident(subject=m.subject, loader_id=m.loader_id, start=now, last_seen=now)
        self._peak(incident, m, now)
        self.incidents.append(incident)
        state.incident = incident
        self._transition(state, now)

    def _clear(self, state: _State, now: dt.datetime) -> None:
        """``_decide`` with a clear condition: resolve once clear for resolve_after_seconds, unless flapping."""
        state.breaches = 0
        state.clear_since = state.clear_since or now
        incident = state.incident
        if incident is None or incident.end is not None:
            return
        if (now - state.clear_since).total_seconds() < self.resolve_after or incident.flapping:
            return
        incident.end = now
        self._transition(state, now)

    def _transition(self, state: _State, now: dt.datetime) -> int:
        """``detection._transition_add``: the open/resolve changes within the flap window."""
        recent = [t for t in state.transitions if t > now - self.flap_window]
        recent.append(now)
        state.transitions = recent[-50:]
        return len(recent)

    def _peak(self, incident: WouldBeIncident, m: Measurement, now: dt.datetime) -> None:
        score = m.details.get("score") if m.details else None
        if isinstance(score, int | float):
            if incident.peak_score is None or score > incident.peak_score:
                incident.peak_score = float(score)
                incident.peak, incident.peak_at = m.value, now
            return
        if m.value is None:
            return
        value = float(m.value)
        if incident.peak is None or (value < incident.peak if self.lowest else value > incident.peak):
            incident.peak, incident.peak_at = value, now
