"""The registry of detection rule kinds.

A kind is a small class with one interface: validate its parameters, and
evaluate a rule over its scope at a moment into *measurements per subject*.
Adding a kind means adding one module that calls ``kind_register`` (and its
tests). Kinds that call an external source raise ``SourceUnavailable``; the
engine reports that as its own incident and goes on with the other rules.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from etl_monitor.errors import InvalidInput

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from incidents.models import DetectionRule
    from loaders.models import Loader


class SourceUnavailable(Exception):
    """An external source (Prometheus, Elasticsearch…) could not be queried; names the source."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


# The sources that failed in the current cycle (a batch of rules, a capture run): the next rule or
# capture asking the same source is answered at once instead of waiting for its timeout again.
_FAILED: ContextVar[dict[str, str] | None] = ContextVar("failed_sources", default=None)


@contextmanager
def source_cycle() -> Iterator[None]:
    """Within it, a source that failed once is not asked again (one cycle = one verdict per source)."""
    token = _FAILED.set({})
    try:
        yield
    finally:
        _FAILED.reset(token)


def source_failed(name: str, reason: str) -> None:
    failures = _FAILED.get()
    if failures is not None:
        failures[name] = reason


def source_known_down(name: str) -> None:
    """Raise SourceUnavailable if ``name`` already failed in this cycle."""
    failures = _FAILED.get()
    if failures is not None and name in failures:
        raise SourceKnownDown(name, failures[name])


@dataclass
class Replay:
    """A backtest in progress: kinds that keep state between evaluations (the anomaly detectors)
    keep it in ``store`` instead of the database, and may read all the data of ``[start, end]``
    at once instead of asking the database at every tick. Nothing a replay does is written."""

    start: dt.datetime
    end: dt.datetime
    store: dict[Any, Any] = field(default_factory=dict)


_REPLAY: ContextVar[Replay | None] = ContextVar("replay", default=None)


@contextmanager
def replay(start: dt.datetime, end: dt.datetime) -> Iterator[Replay]:
    """Evaluate rules as a backtest of ``[start, end]``: see ``Replay``."""
    token = _REPLAY.set(Replay(start, end))
    try:
        yield _REPLAY.get()
    finally:
        _REPLAY.reset(token)


def replay_current() -> Replay | None:
    """The backtest in progress, if any (kinds with state consult it)."""
    return _REPLAY.get()


class SourceKnownDown(SourceUnavailable):
    """The source already failed in this cycle (and its failure was reported then): not asked again."""


class SourceNotConfigured(SourceUnavailable):
    """The source does not exist or is disabled: an integration that is off, not a failure (a
    capture waits for it; a rule that names it still reports it, as its author expects it)."""


@dataclass
class Measurement:
    """What a kind measured for one subject (a loader, or a series of an external source)."""

    subject: str
    value: float | None
    loader_id: int | None = None
    breached: bool | None = None  # kinds that decide themselves (missed_run) set it; else operator/threshold decide
    details: dict[str, Any] = field(default_factory=dict)
    correlation_id: str = ""
    # Which breach this is (the latest failed run, the missed slot…), when the kind can tell: the same
    # episode measured again is the same problem (never a new occurrence, never a reopen after a
    # resolve), another one is a new breach. None: the engine counts a breach after a clear one as new.
    episode: str | None = None
    # One sentence on what was measured, for the timeline: the new failure that reopens an incident,
    # the run that cleared it.
    summary: str = ""


def human_time(at: dt.datetime, zone: str | None = None) -> str:
    """``at`` as people read it in titles and messages — "Thu 26 Nov 02:00 CET" — in ``zone`` (the
    loader's schedule time zone) or else the installation's TIME_ZONE; never an ISO timestamp."""
    try:
        tz = zoneinfo.ZoneInfo(zone or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local = at.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname()}"


@dataclass(frozen=True)
class Param:
    type: type
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    help: str = ""


class RuleKind:
    """Base class: subclasses set ``name``, ``rule_type``, ``params`` and implement ``evaluate``."""

    name: ClassVar[str]
    rule_type: ClassVar[str] = "TRANSACTION"
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    default_operator: ClassVar[str] = "GT"
    default_threshold: ClassVar[float | None] = None
    # A FAILED run or signal can breach it: ingestion's failures evaluate its transaction rules at
    # once (the fast path) instead of waiting for their next tick.
    fast_path: ClassVar[bool] = False
    # Its measurements carry ``breached``, decided by the kind itself (against a schedule, the active
    # version's limits…): a rule of it needs no threshold, and gets no default one.
    self_deciding: ClassVar[bool] = False

    def validate_params(self, raw: Any) -> dict[str, Any]:
        """Normalised parameters, or InvalidInput naming ``params.<name>``."""
        if raw in (None, ""):
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidInput({"params": ["Must be an object of parameters."]})
        errors: dict[str, list[str]] = {}
        clean: dict[str, Any] = {}
        for name in sorted(set(raw) - set(self.params)):
            errors[f"params.{name}"] = [
                f"Unknown parameter for {self.name} (known: {', '.join(self.params) or 'none'})."
            ]
        for name, spec in self.params.items():
            value = raw.get(name, spec.default)
            if value is None:
                if spec.required:
                    errors[f"params.{name}"] = ["Required."]
                continue
            if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
                errors[f"params.{name}"] = [f"Must be a {spec.type.__name__}."]
                continue
            if spec.choices is not None and value not in spec.choices:
                errors[f"params.{name}"] = [f"Must be one of {', '.join(map(str, spec.choices))}."]
                continue
            clean[name] = value
        clean = self.check(clean, errors)
        if errors:
            raise InvalidInput(errors)
        return clean

    def check(self, params: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
        """Cross-parameter checks; add to ``errors``. Override when needed."""
        return params

    def condition_errors(self, rule: DetectionRule) -> dict[str, list[str]]:
        """What a rule of this kind lacks in its condition (threshold, operator) given its parameters:
        field → problems. Nothing by default; override when a parameter makes a field required."""
        return {}

    def evaluate(self, rule: DetectionRule, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        raise NotImplementedError

    def sources(self, rule: DetectionRule) -> list[str]:
        """The external data sources the rule queries (by name): when it evaluates, they answered,
        so their "data source unreachable" incident resolves. Built-in kinds read the database."""
        return []

    def share_key(self, rule: DetectionRule) -> Hashable | None:
        """What a rule's measurements depend on besides its scope, when rules with equal keys
        measure the same (then one evaluation serves them all); None: never shared.

        Kinds whose measurements carry ``breached`` decided against the threshold include the
        threshold here. Measurements are shared objects: the engine only reads them.
        """
        return None

    def evaluate_many(
        self, rules: list[DetectionRule], scope_of: Callable[[DetectionRule], QuerySet[Loader]], now: dt.datetime
    ) -> dict[int, list[Measurement] | BaseException]:
        """Measure several rules of this kind at one moment: rule id → measurements, or the
        exception that rule's evaluation raised (the engine reports it and goes on).

        By default each rule is evaluated on its own, except that rules with the same
        ``share_key`` and scope share one evaluation. Kinds that can answer several rules
        with one query override this.
        """
        results: dict[int, list[Measurement] | BaseException] = {}
        shared: dict[Hashable, list[Measurement] | BaseException] = {}
        for rule in rules:
            key = self.share_key(rule)
            if key is not None:
                key = (key, scope_key(rule))
                if key in shared:
                    results[rule.pk] = shared[key]
                    continue
            try:
                result: list[Measurement] | BaseException = self.evaluate(rule, scope_of(rule), now)
            except Exception as exc:  # noqa: BLE001 — reported per rule by the engine
                result = exc
            results[rule.pk] = result
            if key is not None:
                shared[key] = result
        return results


def scope_key(rule: DetectionRule) -> Hashable:
    """Rules with equal scope keys watch the same loaders (a loader list is never compared: own key)."""
    if rule.scope == "LOADERS":
        return ("LOADERS", rule.pk)
    if rule.scope == "TAG":
        return ("TAG", rule.scope_tag_id)
    if rule.scope == "OWNER":
        return ("OWNER", rule.scope_owner_id)
    return ("ALL",)


_KINDS: dict[str, RuleKind] = {}


def kind_register(kind: type[RuleKind]) -> type[RuleKind]:
    _KINDS[kind.name] = kind()
    return kind


def kind_get(name: str) -> RuleKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise InvalidInput({"kind": [f"Unknown kind {name!r} (known: {', '.join(sorted(_KINDS))})."]}) from None


def kinds_all() -> dict[str, RuleKind]:
    return dict(sorted(_KINDS.items()))
