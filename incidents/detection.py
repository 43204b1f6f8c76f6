"""The detection engine: evaluate rules, decide per subject, fire and resolve incidents.

Evaluation: a rule's kind measures each subject; a breach held for
``open_after`` evaluations fires the incident of fingerprint (rule, subject) —
opened, fired again, or reopened within ``INCIDENT_REOPEN_SECONDS`` of its
resolution; a condition clear for ``resolve_after_seconds`` resolves it by
itself. A breach is an *episode* (the kind names it — the latest failed run,
the missed slot — or else a breach after a clear evaluation is a new one): the
same episode measured again refreshes the incident (title, metrics) without
counting an occurrence and never reopens one that was resolved or closed — a
person's resolve sticks until a new breach, and every reopen says which.
Too many open/resolve cycles in ``INCIDENT_FLAP_WINDOW_SECONDS`` mark the
incident flapping and keep it open instead. An external source that cannot be
queried is one "data source unreachable" incident, resolved when the source answers
again. Rules are claimed with SKIP LOCKED, so a rule is never evaluated twice at once.
Every step writes a timeline entry through ``incidents.events``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, CharField, F, JSONField, OuterRef, Q, QuerySet, Subquery, TextField, Value, When
from django.db.models.functions import Least
from django.utils import timezone

from etl_monitor.errors import InvalidInput
from incidents.events import event_record, events_record_bulk
from incidents.kinds import Measurement, SourceUnavailable, kind_get, kinds_all, source_cycle
from incidents.models import (
    ACTIVE_STATUSES,
    DetectionRule,
    EventKind,
    Incident,
    IncidentStatus,
    Operator,
    RuleSubjectState,
    Scope,
)
from incidents.silences import silence_matching, silences_matching
from loaders.models import Loader

logger = logging.getLogger(__name__)


# --- comparisons and templates ------------------------------------------------------------


def compare(value: float | None, operator: str, threshold: float | None) -> bool:
    """Whether ``value`` breaches ``operator threshold`` (EXISTS: any value at all)."""
    if operator == Operator.EXISTS:
        return value is not None
    if value is None or threshold is None:
        return False
    return {
        Operator.GT: value > threshold,
        Operator.GTE: value >= threshold,
        Operator.LT: value < threshold,
        Operator.LTE: value <= threshold,
        Operator.EQ: value == threshold,
        Operator.NEQ: value != threshold,
    }[operator]


class _SafeFormat(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)


def render(template: str, rule: DetectionRule, m: Measurement) -> str:
    """Fill a message template; a template that cannot be filled is shown as written, never an error."""
    if not template:
        return ""
    details = {k: v for k, v in m.details.items() if isinstance(k, str)}
    values = _SafeFormat(
        details,
        subject=m.subject,
        value=_number(m.value),
        threshold=_number(rule.threshold),
        window=rule.window_seconds,
        rule=rule.name,
    )
    try:
        return template.format_map(values)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return template


def fingerprint_of(rule: DetectionRule, subject: str) -> str:
    return hashlib.sha256(f"rule:{rule.pk}:{subject}".encode()).hexdigest()


# --- scope --------------------------------------------------------------------------------------


def rule_scope(rule: DetectionRule, loader_ids: Iterable[int] | None = None) -> QuerySet[Loader]:
    """The loaders a rule watches: not paused, narrowed by the rule's scope. ``loader_ids`` stand
    for a LOADERS scope's list (a draft's, not saved: a backtest of unsaved settings)."""
    loaders = Loader.objects.filter(is_paused=False)
    if rule.scope == Scope.LOADERS:
        listed = rule.scope_loaders.values("pk") if loader_ids is None else list(loader_ids)
        loaders = loaders.filter(pk__in=listed)
    elif rule.scope == Scope.TAG:
        loaders = loaders.filter(tags=rule.scope_tag_id)
    elif rule.scope == Scope.OWNER:
        loaders = loaders.filter(owner_id=rule.scope_owner_id)
    return loaders


# --- evaluation ----------------------------------------------------------------------------------


class KindMissing(LookupError):
    """A rule names a kind this installation does not have (e.g. an external kind not installed)."""


@dataclass
class Decision:
    rule: str
    subject: str
    value: float | None
    breached: bool
    # opened | opened (suppressed) | refired (a new breach) | ongoing (the same breach) | reopened | resolved
    # | pending | clear | flapping | held (resolved or closed, and the breach is the one it was about)
    action: str
    incident_id: int | None = None
    note: str = ""


@dataclass
class EvaluationReport:
    rule: str
    rule_id: int | None = None
    decisions: list[Decision] = field(default_factory=list)
    error: str = ""


def rule_evaluate(
    *, rule: DetectionRule, now: dt.datetime | None = None, loader_id: int | None = None
) -> EvaluationReport:
    """Evaluate one rule now and act on each subject; return every decision made (for detect_once).

    ``loader_id`` narrows the evaluation to one loader (the event-driven fast path).
    """
    return rules_evaluate(rules=[rule], now=now, loader_id=loader_id)[0]


def rules_evaluate(
    *, rules: list[DetectionRule], now: dt.datetime | None = None, loader_id: int | None = None
) -> list[EvaluationReport]:
    """Evaluate a batch of rules at one moment; one report per rule, in the order given.

    The batch shares its reads and writes: each kind measures all of its rules at once
    (rules with the same window and scope share one query), the subject states and open
    incidents of every rule are read in one query, ongoing breaches are counted in one
    UPDATE, and the rules' timestamps are written in one UPDATE per interval. Subjects that
    are clear and have nothing pending cost no write, so a cycle over thousands of quiet
    loaders stays a handful of queries. A rule that fails is reported on its own and does
    not stop the others.
    """
    now = now or timezone.now()
    reports = [EvaluationReport(rule=rule.name, rule_id=rule.pk) for rule in rules]
    with source_cycle():  # a source that fails is asked once per batch, not once per rule
        results = _measure(rules, now, loader_id)
    states = _states_read([rule.pk for rule in rules if isinstance(results.get(rule.pk), list)])
    refires: list[_Refire] = []
    errors: dict[int, str] = {}
    answered: set[str] = set()  # external sources that answered (their unreachable incidents resolve)
    fired: dict[str, tuple[Incident, str]] = {}  # each unreachable source's incident, fired once per batch
    for rule, report in zip(rules, reports, strict=True):
        result = results[rule.pk]
        if isinstance(result, SourceUnavailable):
            _source_unavailable(rule, result, now, report, fired)
            result = []
        elif isinstance(result, KindMissing):
            report.error = errors[rule.pk] = str(result)
            continue
        elif isinstance(result, BaseException):
            # A broken rule must not stop the cycle: record it on the rule and go on with the others.
            logger.error("detection rule %s failed", rule.name, exc_info=result)
            report.error = f"evaluation failed: {type(result).__name__}: {str(result)[:200]}"
            errors[rule.pk] = report.error
            continue
        _rule_decide(rule, result, states.get(rule.pk, {}), now, loader_id, report, refires)
        errors[rule.pk] = report.error
        if not isinstance(results[rule.pk], SourceUnavailable):
            answered |= set(_kind_sources(rule))
    _refires_apply(refires, now)
    sources_reachable(answered, now)
    if loader_id is None:  # a fast-path evaluation of one loader does not replace the rule's full cycle
        _rules_mark_evaluated([rule for rule in rules if rule.pk in errors], now, errors)
    return reports


def _measure(
    rules: list[DetectionRule], now: dt.datetime, loader_id: int | None
) -> dict[int, list[Measurement] | BaseException]:
    """Each rule's measurements (or the exception its kind raised), kind by kind."""

    def scope_of(rule: DetectionRule) -> QuerySet[Loader]:
        scope = rule_scope(rule)
        return scope.filter(pk=loader_id) if loader_id is not None else scope

    results: dict[int, list[Measurement] | BaseException] = {}
    by_kind: dict[str, list[DetectionRule]] = {}
    for rule in rules:
        by_kind.setdefault(rule.kind, []).append(rule)
    for name, group in by_kind.items():
        try:
            kind = kind_get(name)
        except InvalidInput:
            results.update(
                {rule.pk: KindMissing(f"kind {name!r} is not available in this installation") for rule in group}
            )
            continue
        try:
            results.update(kind.evaluate_many(group, scope_of, now))
        except Exception as exc:  # noqa: BLE001 — a kind's own failure is reported per rule
            results.update({rule.pk: exc for rule in group if rule.pk not in results})
    return results


def _kind_sources(rule: DetectionRule) -> list[str]:
    try:
        return kind_get(rule.kind).sources(rule)
    except InvalidInput:
        return []


def _states_read(rule_ids: list[int]) -> dict[int, dict[str, RuleSubjectState]]:
    """The subject states of the rules, each with its open incident (one query; every incident a
    rule opens has a state)."""
    if not rule_ids:
        return {}
    open_incidents = Incident.objects.filter(
        rule=OuterRef("rule"), subject=OuterRef("subject"), status__in=ACTIVE_STATUSES
    ).order_by()
    states: dict[int, dict[str, RuleSubjectState]] = {}
    rows = RuleSubjectState.objects.filter(rule_id__in=rule_ids).annotate(
        open_pk=Subquery(open_incidents.values("pk")[:1]),
        open_timeline_at=Subquery(open_incidents.values("timeline_at")[:1]),
    )
    for state in rows:
        states.setdefault(state.rule_id, {})[state.subject] = state
    return states


def _source_unavailable(
    rule: DetectionRule,
    exc: SourceUnavailable,
    now: dt.datetime,
    report: EvaluationReport,
    fired: dict[str, tuple[Incident, str]],
) -> None:
    """A rule whose source is unreachable reports it; the source's one incident fires (once per
    batch, however many of its rules use the source)."""
    report.error = f"source unavailable: {exc}"
    if exc.source not in fired:
        fired[exc.source] = source_unreachable(exc.source, exc.reason, now, category=rule.rule_type)
    incident, action = fired[exc.source]
    report.decisions.append(Decision(rule.name, f"source:{exc.source}", None, True, action, incident.pk, exc.reason))


def source_fingerprint(name: str) -> str:
    return hashlib.sha256(f"source:{name}".encode()).hexdigest()


def source_unreachable(
    name: str, reason: str, now: dt.datetime, *, category: str = "INFRASTRUCTURE"
) -> tuple[Incident, str]:
    """The one "data source unreachable" incident of source ``name`` fires (opens, or is refreshed
    while the outage lasts): however many rules and captures use the source, it is one incident."""

    def build() -> Incident:
        return Incident(
            title=f"Data source unreachable: {name}"[:300],
            description=f"Data source {name!r} cannot be queried: {reason}",
            severity=settings.SOURCE_UNREACHABLE_SEVERITY,
            category=category,
            subject=f"source:{name}"[:300],
            suggestion="Check the source's URL, credentials and network path (admin → Data sources → "
            "Test the connection). It resolves by itself once the source answers again.",
        )

    with transaction.atomic():
        # One outage is one breach however many cycles meet it; a reopen says what failed.
        return incident_fire(
            fingerprint=source_fingerprint(name),
            snapshot={"error": reason},
            value=None,
            now=now,
            build=build,
            new_breach=False,
            reason=f"data source {name!r} cannot be queried: {reason}",
        )


def sources_reachable(names: set[str], now: dt.datetime) -> list[int]:
    """Resolve the "data source unreachable" incidents of sources that answered; their pks."""
    if not names:
        return []
    resolved = []
    fingerprints = [source_fingerprint(name) for name in names]
    for pk in Incident.objects.filter(fingerprint__in=fingerprints, status__in=ACTIVE_STATUSES).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            incident = Incident.objects.select_for_update().get(pk=pk)
            if incident.status in ACTIVE_STATUSES:
                incident_resolve_auto(incident, now, "Resolved automatically: the data source answers again.")
                resolved.append(pk)
    return resolved


def incident_resolve_auto(incident: Incident, now: dt.datetime, message: str, data: dict | None = None) -> None:
    """→ RESOLVED by the platform (its condition is clear); ``incident`` is locked by the caller."""
    incident.resolve()
    incident.resolved_at = now
    incident.save()
    event_record(incident, EventKind.RESOLVED, at=now, message=message, data=data)


@dataclass
class _Refire:
    """An ongoing breach (the same episode) of an open incident: refreshed in the batch's one UPDATE."""

    rule: DetectionRule
    m: Measurement
    incident_id: int
    report: EvaluationReport
    index: int  # of its decision in the report (replaced if the incident was closed meanwhile)


def _episode_of(m: Measurement, state: RuleSubjectState | None, now: dt.datetime) -> str:
    """The breach episode ``m`` belongs to: the one its kind names, or — for kinds that cannot tell
    (thresholds) — the one the subject is in while it keeps breaching, a new one after a clear."""
    if m.episode is not None:
        return m.episode[:300]
    if state is not None and state.episode and state.consecutive_breaches > 0 and state.clear_since is None:
        return state.episode
    return f"since:{now.isoformat()}"


def _breach_text(rule: DetectionRule, m: Measurement) -> str:
    """What breached, in words, for the timeline (a reopen, a new occurrence): never empty."""
    if m.summary:
        return f"{m.subject}: {m.summary}"
    return render(rule.message, rule, m) or f"{m.subject}: {_number(m.value)} against {rule.threshold}"


def _rule_decide(
    rule: DetectionRule,
    measurements: list[Measurement],
    states: dict[str, RuleSubjectState],
    now: dt.datetime,
    loader_id: int | None,
    report: EvaluationReport,
    refires: list[_Refire],
) -> None:
    """Act on one rule's measurements: clear subjects cost nothing, ongoing breaches of an open
    incident are queued for the batch's one UPDATE, the rest decide under a row lock."""
    active = {subject: (s.open_pk, s.open_timeline_at) for subject, s in states.items() if s.open_pk is not None}
    refire_interval = dt.timedelta(seconds=settings.INCIDENT_REFIRE_EVENT_SECONDS)

    def settled(subject: str) -> bool:
        state = states.get(subject)
        quiet = state is None or (state.consecutive_breaches == 0 and state.clear_since is not None)
        return quiet and subject not in active

    seen = set()
    opening: list[tuple[Measurement, int]] = []  # (measurement, index of its decision in the report)
    for m in measurements:
        seen.add(m.subject)
        breached = m.breached if m.breached is not None else compare(m.value, rule.operator, rule.threshold)
        if not breached and settled(m.subject):
            report.decisions.append(Decision(rule.name, m.subject, m.value, False, "clear"))
            continue
        state = states.get(m.subject)
        ongoing = state is not None and state.consecutive_breaches >= rule.open_after and state.clear_since is None
        same = ongoing and state is not None and state.episode == _episode_of(m, state, now)
        if breached and same and m.subject not in active:
            # The breach its incident was about, resolved or closed since (by a person, a success):
            # it stays so until a new breach. No write.
            note = "resolved or closed; waits for a new breach"
            report.decisions.append(Decision(rule.name, m.subject, m.value, True, "held", note=note))
            continue
        if breached and same and m.subject in active:
            # The same breach of an open incident: refreshed in the batch's one UPDATE (the rule row
            # lock, held by the claiming task, keeps other evaluations of this rule away); a "still
            # firing" timeline entry at most every INCIDENT_REFIRE_EVENT_SECONDS.
            incident_id, timeline_at = active[m.subject]
            if timeline_at is not None and now - timeline_at < refire_interval:
                refires.append(_Refire(rule, m, incident_id, report, len(report.decisions)))
                report.decisions.append(Decision(rule.name, m.subject, m.value, True, "ongoing", incident_id))
                continue
        if breached and m.subject not in active and settings.INCIDENT_OPEN_CHUNK_SIZE > 0:
            # Most likely a new incident: opened with the others of the batch (a storm costs a
            # few statements per chunk, not a few per incident); decided in _opens_apply.
            opening.append((m, len(report.decisions)))
            report.decisions.append(Decision(rule.name, m.subject, m.value, True, "pending"))
            continue
        with transaction.atomic():
            report.decisions.append(_decide(rule, m, breached, now))
    _opens_apply(rule, opening, now, report)
    # Subjects that fired before but produced no measurement now are clear (no data, no breach).
    codes = None
    if loader_id is not None:
        codes = set(Loader.objects.filter(pk=loader_id).values_list("loader_code", flat=True))
    for subject in set(states) - seen:
        if (subject.startswith("source:") and report.error) or settled(subject):
            continue
        if codes is not None and subject not in codes:
            continue  # the fast path only speaks for its own loader
        with transaction.atomic():
            report.decisions.append(_decide(rule, Measurement(subject=subject, value=None), False, now))


def _opens_apply(
    rule: DetectionRule, opening: list[tuple[Measurement, int]], now: dt.datetime, report: EvaluationReport
) -> None:
    """Decide the breaches of subjects without an open incident in chunks of
    INCIDENT_OPEN_CHUNK_SIZE, each in an atomic block of its own (a savepoint when the batch is
    claimed): the decisions are those ``_decide`` makes one by one, with one statement per step
    per chunk. Subjects whose incident is active or recently resolved (fire again, reopen) take
    the one-by-one path."""
    size = max(1, settings.INCIDENT_OPEN_CHUNK_SIZE)
    for start in range(0, len(opening), size):
        with transaction.atomic():
            _opens_chunk(rule, opening[start : start + size], now, report)


def _opens_chunk(
    rule: DetectionRule, chunk: list[tuple[Measurement, int]], now: dt.datetime, report: EvaluationReport
) -> None:
    subjects = [m.subject for m, _index in chunk]
    RuleSubjectState.objects.bulk_create(
        [RuleSubjectState(rule=rule, subject=subject) for subject in subjects], ignore_conflicts=True
    )
    states = {
        state.subject: state
        for state in RuleSubjectState.objects.select_for_update().filter(rule=rule, subject__in=subjects)
    }
    reopen_after = now - dt.timedelta(seconds=settings.INCIDENT_REOPEN_SECONDS)
    known = set(
        Incident.objects.filter(fingerprint__in=[fingerprint_of(rule, subject) for subject in subjects])
        .filter(Q(status__in=ACTIVE_STATUSES) | Q(status=IncidentStatus.RESOLVED, resolved_at__gte=reopen_after))
        .values_list("fingerprint", flat=True)
    )
    changed: list[RuleSubjectState] = []
    new_episodes: list[RuleSubjectState] = []
    opened: list[tuple[Measurement, int, RuleSubjectState]] = []
    for m, index in chunk:
        if fingerprint_of(rule, m.subject) in known:  # fires again or reopens: the one-by-one path
            with transaction.atomic():
                report.decisions[index] = _decide(rule, m, True, now)
            continue
        state = states[m.subject]
        episode = _episode_of(m, state, now)
        if episode == state.episode and state.consecutive_breaches >= rule.open_after and state.clear_since is None:
            # Its incident was closed (or resolved long ago) on this very breach: not opened again.
            note = "resolved or closed; waits for a new breach"
            report.decisions[index] = Decision(rule.name, m.subject, m.value, True, "held", note=note)
            continue
        if episode != state.episode:
            state.episode = episode
            new_episodes.append(state)
        if state.consecutive_breaches < rule.open_after or state.clear_since is not None:
            state.consecutive_breaches = min(state.consecutive_breaches + 1, rule.open_after)
            state.clear_since = None
            changed.append(state)
        if state.consecutive_breaches < rule.open_after:
            note = f"breach {state.consecutive_breaches} of {rule.open_after} needed"
            report.decisions[index] = Decision(rule.name, m.subject, m.value, True, "pending", note=note)
        else:
            opened.append((m, index, state))
    # One UPDATE: every changed state counts one more breach (up to open_after) and is no longer clear.
    RuleSubjectState.objects.filter(pk__in=[state.pk for state in changed]).update(
        consecutive_breaches=Least(F("consecutive_breaches") + 1, Value(rule.open_after)), clear_since=None
    )
    if new_episodes:
        RuleSubjectState.objects.bulk_update(new_episodes, ["episode"])
    if opened:
        _opens_write(rule, opened, now, report)


def _opens_write(
    rule: DetectionRule,
    opened: list[tuple[Measurement, int, RuleSubjectState]],
    now: dt.datetime,
    report: EvaluationReport,
) -> None:
    """Open the incidents of ``opened`` at once (``incidents_open``) and write the states'
    transitions in one UPDATE. Should one of them have opened meanwhile (the fingerprint's partial
    unique index refuses the insert), each takes the one-by-one path: that one fires again."""
    incidents = [
        incident_stamp(_incident_build(rule, m), fingerprint_of(rule, m.subject), _snapshot(rule, m), now)
        for m, _index, _state in opened
    ]
    actions = incidents_open(incidents, [m.value for m, _index, _state in opened], now)
    if actions is None:
        for m, index, state in opened:
            with transaction.atomic():
                incident, action = _fire(rule, m, now, state, known_inactive=False)
            report.decisions[index] = Decision(rule.name, m.subject, m.value, True, action, incident.pk)
        return
    for (m, index, state), incident, action in zip(opened, incidents, actions, strict=True):
        _transition_add(state, now)
        report.decisions[index] = Decision(rule.name, m.subject, m.value, True, action, incident.pk)
    _transitions_write([state for _m, _index, state in opened])


def incidents_open(incidents: list[Incident], values: list[float | None], now: dt.datetime) -> list[str] | None:
    """Open new incidents at once (built and stamped, ``incident_stamp``), as ``incident_fire``
    opens each: silences matched for all, one insert, the timeline in one insert (OPENED, and
    SUPPRESSED for the silenced), announced once as a list so routing writes the deliveries of all.
    Returns each one's action, or None when the fingerprint's partial unique index refused the
    insert (one opened meanwhile): nothing was written, the caller takes the one-by-one path."""
    silences = silences_matching(incidents, now)
    for incident, silence in zip(incidents, silences, strict=True):
        incident.suppressed = silence is not None
    try:
        with transaction.atomic():
            Incident.objects.bulk_create(incidents)
    except IntegrityError:
        return None
    entries: list[tuple[Incident, str, str, dict[str, Any]]] = []
    actions = []
    for incident, value, silence in zip(incidents, values, silences, strict=True):
        entries.append((incident, EventKind.OPENED, incident.description, {"value": value}))
        if silence is None:
            actions.append("opened")
        else:
            entries.append((incident, EventKind.SUPPRESSED, f"Silenced by {silence}", {"silence": silence.pk}))
            actions.append("opened (suppressed)")
    events_record_bulk(entries, at=now)
    return actions


def _transitions_write(states: list[RuleSubjectState]) -> None:
    """Save the states' transitions: one UPDATE per distinct list (the states of a storm share theirs)."""
    groups: dict[str, list[int]] = {}
    for state in states:
        groups.setdefault(json.dumps(state.transitions), []).append(state.pk)
    for transitions, ids in groups.items():
        RuleSubjectState.objects.filter(pk__in=ids).update(transitions=json.loads(transitions))


def _refires_apply(refires: list[_Refire], now: dt.datetime) -> None:
    """Refresh each open incident whose breach goes on — last seen, metrics, and the title and
    description with the counts as they are now — in one UPDATE (the same breach is no new
    occurrence); an incident closed meanwhile (by a person, between the read and now) takes the
    full decision path instead."""
    if not refires:
        return
    ids = [r.incident_id for r in refires]
    rows = [(r.incident_id, _snapshot(r.rule, r.m), *_incident_text(r.rule, r.m)) for r in refires]
    with transaction.atomic():
        updated = _refreshes_write(rows, now)
        if updated == len(set(ids)):
            return
        still_active = set(Incident.objects.filter(pk__in=ids, status__in=ACTIVE_STATUSES).values_list("pk", flat=True))
    for r in refires:
        if r.incident_id not in still_active:
            with transaction.atomic():
                r.report.decisions[r.index] = _decide(r.rule, r.m, True, now)


def _refreshes_write(rows: list[tuple[int, dict[str, Any], str, str]], now: dt.datetime) -> int:
    """Write (incident id, metrics, title, description) to the still active incidents among them,
    with ``last_seen``; returns how many were written. On PostgreSQL one ``UPDATE … FROM unnest``
    of four arrays: the ORM's form, a CASE of one WHEN per incident for each column, cost more
    to build in Python (and to match in SQL) than the rest of a cycle over 900 open incidents."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Incident._meta.db_table} AS i SET last_seen = %s, metrics = v.metrics::jsonb, "  # noqa: S608
                "title = v.title, description = v.description "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(id, metrics, title, description) "
                "WHERE i.id = v.id AND i.status = ANY(%s)",
                [
                    now,
                    [row[0] for row in rows],
                    [json.dumps(row[1]) for row in rows],
                    [row[2] for row in rows],
                    [row[3] for row in rows],
                    list(ACTIVE_STATUSES),
                ],
            )
            return cursor.rowcount
    pick = [(pk, Value(metrics, output_field=JSONField()), title, text) for pk, metrics, title, text in rows]
    return Incident.objects.filter(pk__in=[row[0] for row in rows], status__in=ACTIVE_STATUSES).update(
        last_seen=now,
        metrics=Case(*(When(pk=pk, then=m) for pk, m, _t, _d in pick), output_field=JSONField()),
        title=Case(*(When(pk=pk, then=Value(t)) for pk, _m, t, _d in pick), output_field=CharField()),
        description=Case(*(When(pk=pk, then=Value(d)) for pk, _m, _t, d in pick), output_field=TextField()),
    )


def _rules_mark_evaluated(rules: list[DetectionRule], now: dt.datetime, errors: dict[int, str]) -> None:
    """Write the rules' timestamps: one UPDATE per distinct interval (plus one per failed rule)."""
    by_interval: dict[int, list[int]] = {}
    for rule in rules:
        if errors.get(rule.pk):
            DetectionRule.objects.filter(pk=rule.pk).update(
                last_evaluated_at=now,
                next_due_at=now + dt.timedelta(seconds=rule.interval_seconds),
                last_error=errors[rule.pk],
            )
        else:
            by_interval.setdefault(rule.interval_seconds, []).append(rule.pk)
    for interval, ids in by_interval.items():
        DetectionRule.objects.filter(pk__in=ids).update(
            last_evaluated_at=now, next_due_at=now + dt.timedelta(seconds=interval), last_error=""
        )


def _decide(rule: DetectionRule, m: Measurement, breached: bool, now: dt.datetime) -> Decision:
    state, _ = RuleSubjectState.objects.select_for_update().get_or_create(rule=rule, subject=m.subject)
    active = Incident.objects.filter(fingerprint=fingerprint_of(rule, m.subject), status__in=ACTIVE_STATUSES).first()
    if breached:
        episode = _episode_of(m, state, now)
        new_breach = episode != state.episode
        fired = (
            not new_breach and state.consecutive_breaches >= rule.open_after and state.clear_since is None
        )  # this breach already fired its incident
        # The counter only matters up to open_after: an ongoing breach then costs no state write.
        if state.consecutive_breaches < rule.open_after or state.clear_since is not None or new_breach:
            state.consecutive_breaches = min(state.consecutive_breaches + 1, rule.open_after)
            state.clear_since = None
            state.episode = episode
            state.save(update_fields=["consecutive_breaches", "clear_since", "episode"])
        if state.consecutive_breaches < rule.open_after and active is None:
            return Decision(
                rule.name,
                m.subject,
                m.value,
                True,
                "pending",
                note=f"breach {state.consecutive_breaches} of {rule.open_after} needed",
            )
        if fired and active is None:
            note = "resolved or closed; waits for a new breach"
            return Decision(rule.name, m.subject, m.value, True, "held", note=note)
        incident, action = _fire(rule, m, now, state, known_inactive=active is None, new_breach=not fired)
        return Decision(rule.name, m.subject, m.value, True, action, incident.pk)
    state.consecutive_breaches = 0
    state.clear_since = state.clear_since or now
    state.save(update_fields=["consecutive_breaches", "clear_since"])
    if active is None:
        return Decision(rule.name, m.subject, m.value, False, "clear")
    if (now - state.clear_since).total_seconds() < rule.resolve_after_seconds:
        return Decision(rule.name, m.subject, m.value, False, "pending", active.pk, "waiting to stay clear")
    if active.flapping:
        return Decision(rule.name, m.subject, m.value, False, "flapping", active.pk, "kept open while flapping")
    incident = Incident.objects.select_for_update().get(pk=active.pk)
    why = f"Resolved automatically: {m.summary}." if m.summary else "Resolved automatically: the condition is clear."
    run = m.details.get("resolved_by_run")
    incident_resolve_auto(incident, now, why, {"run_id": run} if run else None)
    _record_transition(state, now)
    return Decision(rule.name, m.subject, m.value, False, "resolved", incident.pk)


def _snapshot(rule: DetectionRule, m: Measurement) -> dict[str, Any]:
    return {"value": m.value, "threshold": rule.threshold, "operator": rule.operator, **m.details}


def _record_transition(state: RuleSubjectState, now: dt.datetime) -> int:
    flips = _transition_add(state, now)
    state.save(update_fields=["transitions"])
    return flips


def _transition_add(state: RuleSubjectState, now: dt.datetime) -> int:
    """Note an open/resolve change on the (unsaved) state; the changes within the flap window."""
    window = dt.timedelta(seconds=settings.INCIDENT_FLAP_WINDOW_SECONDS)
    recent = [t for t in state.transitions if dt.datetime.fromisoformat(t) > now - window]
    recent.append(now.isoformat())
    state.transitions = recent[-50:]
    return len(recent)


def _fire(
    rule: DetectionRule,
    m: Measurement,
    now: dt.datetime,
    state: RuleSubjectState,
    *,
    known_inactive: bool,
    new_breach: bool = True,
) -> tuple[Incident, str]:
    """Open, fire again, or reopen the incident of (rule, subject); ``state`` is the subject's (locked)."""

    return incident_fire(
        fingerprint=fingerprint_of(rule, m.subject),
        snapshot=_snapshot(rule, m),
        value=m.value,
        now=now,
        build=lambda: _incident_build(rule, m),
        state_get=lambda: state,
        known_inactive=known_inactive,
        new_breach=new_breach,
        reason=_breach_text(rule, m),
    )


def _incident_text(rule: DetectionRule, m: Measurement) -> tuple[str, str]:
    """Title and description of a rule's incident about ``m`` — rendered anew at every evaluation,
    so the counts they name are the current ones. The description adds what the kind says of the
    latest breach (or of what cleared it)."""
    message = render(rule.message, rule, m) or f"{rule.name}: {m.subject}"
    description = message
    if m.summary:
        description = f"{message}\n\n{m.summary[0].upper()}{m.summary[1:]}."
    return message[:300], description


def _incident_build(rule: DetectionRule, m: Measurement) -> Incident:
    """The incident a rule's breach of subject ``m.subject`` opens (before ``incident_stamp``)."""
    title, description = _incident_text(rule, m)
    return Incident(
        title=title,
        description=description,
        severity=rule.severity,
        category=rule.rule_type,
        rule=rule,
        loader_id=m.loader_id,
        subject=m.subject[:300],
        suggestion=render(rule.suggestion, rule, m),
        correlation_id=m.correlation_id[:100],
    )


def incident_stamp(incident: Incident, fingerprint: str, snapshot: dict[str, Any], now: dt.datetime) -> Incident:
    """What every new incident gets as it opens: its fingerprint, times and first metrics."""
    incident.fingerprint = fingerprint
    incident.first_seen = incident.last_seen = incident.timeline_at = now
    incident.metrics = snapshot
    return incident


def incident_fire(
    *,
    fingerprint: str,
    snapshot: dict[str, Any],
    value: float | None,
    now: dt.datetime,
    build: Callable[[], Incident],
    state_get: Callable[[], RuleSubjectState | None] = lambda: None,
    known_inactive: bool = False,
    new_breach: bool = True,
    reason: str = "",
) -> tuple[Incident, str]:
    """Open, fire again, or reopen the incident of ``fingerprint`` (call inside a transaction).

    The one path every incident takes — detection rules and external sources (Alertmanager,
    an unreachable data source) alike: an active incident fires again, one resolved within
    ``INCIDENT_REOPEN_SECONDS`` reopens, otherwise ``build()`` gives the new incident (title,
    severity, category, subject…) and it opens. Silences, flapping and the timeline apply the same.

    ``new_breach`` says whether this is a new breach (a new failure, a new firing) or the one the
    active incident is about, measured again: only a new one counts an occurrence. ``reason``
    names the breach in words; a reopen always says why, with it or with the measured value.
    """
    # A caller that has just seen no active incident (in this transaction) spares the query; should
    # one open meanwhile, the unique index refuses the new one and the retry below fires it.
    active = None
    if not known_inactive:
        active = (
            Incident.objects.select_for_update().filter(fingerprint=fingerprint, status__in=ACTIVE_STATUSES).first()
        )
    if active is not None:
        if new_breach:
            active.occurrences += 1
        active.last_seen = now
        active.metrics = snapshot
        fresh = build()  # the title and description with the counts as they are now
        active.title, active.description = fresh.title, fresh.description
        # The timeline gets a REFIRED entry for each new breach, and while one breach lasts, a "still
        # firing" entry at most every INCIDENT_REFIRE_EVENT_SECONDS (reminders follow those).
        last_entry = active.timeline_at or active.first_seen
        write_event = (now - last_entry).total_seconds() >= settings.INCIDENT_REFIRE_EVENT_SECONDS
        write_event = write_event or (new_breach and bool(reason))
        if write_event:
            active.timeline_at = now
        active.save(
            update_fields=["occurrences", "last_seen", "metrics", "title", "description", "timeline_at", "updated_at"]
        )
        if write_event:
            event_record(
                active,
                EventKind.REFIRED,
                at=now,
                message=f"New breach: {reason}" if new_breach and reason else "Still firing.",
                data={"value": value, "occurrences": active.occurrences, "new_breach": new_breach},
            )
        return active, "refired" if new_breach else "ongoing"
    state = state_get()
    reopen_after = now - dt.timedelta(seconds=settings.INCIDENT_REOPEN_SECONDS)
    recent = (
        Incident.objects.select_for_update()
        .filter(fingerprint=fingerprint, status=IncidentStatus.RESOLVED, resolved_at__gte=reopen_after)
        .order_by("-resolved_at")
        .first()
    )
    if recent is not None:
        recent.reopen()
        recent.timeline_at = now
        recent.occurrences += 1
        recent.last_seen = now
        recent.metrics = snapshot
        recent.resolved_at = recent.resolved_by = None
        flips = _record_transition(state, now) if state else 0
        if flips >= settings.INCIDENT_FLAP_THRESHOLD and not recent.flapping:
            recent.flapping = True
            event_record(
                recent, EventKind.FLAPPING, at=now, message=f"{flips} open/resolve changes within the flap window."
            )
        fresh = build()
        recent.title, recent.description = fresh.title, fresh.description
        silence = silence_matching(recent, now)
        recent.suppressed = silence is not None
        recent.save()
        why = reason or (f"value {_number(value)}" if value is not None else "it fired again")
        event_record(
            recent, EventKind.REOPENED, at=now, message=f"Reopened by a new breach: {why}", data={"value": value}
        )
        if silence is not None:
            event_record(
                recent, EventKind.SUPPRESSED, at=now, message=f"Silenced by {silence}", data={"silence": silence.pk}
            )
            return recent, "reopened (suppressed)"
        return recent, "reopened"
    incident = incident_stamp(build(), fingerprint, snapshot, now)
    try:
        with transaction.atomic():
            incident.save()
    except IntegrityError:
        # Another evaluation opened it a moment ago (the partial unique index): fire that one again.
        return incident_fire(
            fingerprint=fingerprint, snapshot=snapshot, value=value, now=now, build=build, state_get=state_get
        )
    if state:
        _record_transition(state, now)
    # Whether a silence matches is known before the "opened" entry, so its subscribers
    # (notifications) see a suppressed incident as suppressed.
    silence = silence_matching(incident, now)
    if silence is not None:
        incident.suppressed = True
        incident.save(update_fields=["suppressed"])
    event_record(incident, EventKind.OPENED, at=now, message=incident.description, data={"value": value})
    if silence is not None:
        event_record(
            incident, EventKind.SUPPRESSED, at=now, message=f"Silenced by {silence}", data={"silence": silence.pk}
        )
        return incident, "opened (suppressed)"
    return incident, "opened"


def rules_due(now: dt.datetime | None = None) -> QuerySet[DetectionRule]:
    now = now or timezone.now()
    return DetectionRule.objects.filter(enabled=True).filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=now))


def rules_for_loader(loader_id: int) -> list[int]:
    """Enabled transaction rules whose scope includes the loader and whose kind reacts to a failure."""
    fast_path_kinds = [name for name, kind in kinds_all().items() if kind.fast_path]
    rules = DetectionRule.objects.filter(enabled=True, rule_type="TRANSACTION", kind__in=fast_path_kinds)
    return [rule.pk for rule in rules if rule_scope(rule).filter(pk=loader_id).exists()]


def rule_evaluate_claimed(
    *, rule_id: int, now: dt.datetime | None = None, loader_id: int | None = None
) -> EvaluationReport | None:
    """Evaluate a rule unless another worker holds it (row lock, SKIP LOCKED): never twice at once."""
    reports = rules_evaluate_claimed(rule_ids=[rule_id], now=now, loader_id=loader_id)
    return reports[0] if reports else None


def rules_evaluate_claimed(
    *, rule_ids: list[int], now: dt.datetime | None = None, loader_id: int | None = None, only_due: bool = False
) -> list[EvaluationReport]:
    """Evaluate the enabled rules of ``rule_ids`` that no other worker holds (row locks taken with
    SKIP LOCKED, so a rule is never evaluated twice at once and a busy one is skipped, not
    waited for). Returns the reports of the rules evaluated; the caller sees which were skipped.

    ``only_due`` (the detection tick's tasks): claim only the rules still due once locked. Two
    ticks (two schedulers, or a queue slower than the tick) enqueue the same due rule twice; the
    task that runs after the first one committed finds ``next_due_at`` moved on and skips it, so
    each due time is evaluated once. Each claim is logged with its moment and the due time it takes."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = DetectionRule.objects.select_for_update(skip_locked=True).filter(pk__in=rule_ids, enabled=True)
        if only_due:
            claimed = claimed.filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=now))
        rules = list(claimed.order_by("pk"))
        if not rules:
            return []
        if only_due:
            due = [f"{rule.pk}@{rule.next_due_at.isoformat() if rule.next_due_at else 'first'}" for rule in rules]
            logger.info("detection: claimed at %s rule@due %s", now.isoformat(), " ".join(due))
        return rules_evaluate(rules=rules, now=now, loader_id=loader_id)
