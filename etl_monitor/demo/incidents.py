"""The demo's incidents and their timelines, with the subject states the engine goes on from."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from etl_monitor.demo.catalogue import BATCH, COMMENTS, FAILING, LATE, LOW_VOLUME, SLOW, DemoReport
from etl_monitor.demo.runs import RunPlan, schedule_slots
from incidents.detection import fingerprint_of
from incidents.models import DetectionRule, EventKind, Incident, IncidentEvent, IncidentStatus, RuleSubjectState
from loaders.models import Loader
from signals_app.models import (
    RunStatus,
)

# Profile → (rule name, status of the incident about the latest trouble, with a Jira key?)
CURRENT_TROUBLE = {
    FAILING: ("Run failed", IncidentStatus.OPEN, True),
    LATE: ("Missed run", IncidentStatus.OPEN, False),
    SLOW: ("Run too long", IncidentStatus.ACKNOWLEDGED, True),
    LOW_VOLUME: ("Volume out of range", IncidentStatus.ACKNOWLEDGED, False),
}
PAST_INCIDENTS_PER_LOADER = 3


class IncidentsWriter:
    """Incidents and their timelines, collected for two bulk inserts."""

    def __init__(self, rules: dict[str, DetectionRule], operator: Any, now: dt.datetime) -> None:
        self.rules, self.operator, self.now = rules, operator, now
        self.rng = random.Random()  # reseeded for each loader (``incidents_plan``)
        self.items: list[tuple[Incident, list[IncidentEvent]]] = []
        self.episodes: dict[int, str] = {}  # id() of an incident → the breach it is about, as its kind names it
        self.jira_number = 100

    def _jira(self, incident: Incident) -> None:
        self.jira_number += 3
        incident.external_key = f"OPS-{self.jira_number}"
        incident.external_url = f"https://jira.example.com/browse/{incident.external_key}"

    def add(
        self,
        *,
        loader: Loader,
        rule_name: str,
        opened: dt.datetime,
        status: str,
        value: float,
        text: str,
        metrics: dict[str, Any],
        refired: Sequence[tuple[dt.datetime, str]] = (),
        jira: bool = False,
        episode: str = "",
    ) -> None:
        """One incident about ``loader`` as the rule ``rule_name`` opens it, then taken as far as
        ``status`` by the on-call operator: acknowledged, commented, resolved, closed."""
        rng, operator = self.rng, self.operator
        rule = self.rules.get(rule_name)
        subject = loader.loader_code
        version = loader.active_version
        incident = Incident(
            title=f"{subject}: {text}"[:300],
            description=f"{subject}: {text}",
            severity=rule.severity if rule else (version.default_severity if version else "MEDIUM"),
            category=rule.rule_type if rule else "TRANSACTION",
            rule=rule,
            loader=loader,
            subject=subject,
            status=status,  # set once, here: the FSM field refuses later assignments
            fingerprint=fingerprint_of(rule, subject) if rule else f"demo:{rule_name}:{subject}",
            occurrences=1 + len(refired),
            first_seen=opened,
            last_seen=opened,
            timeline_at=opened,
            metrics={"value": value, **metrics},
            suggestion=rule.suggestion if rule else "",
            correlation_id=f"{subject.lower()}-{opened:%Y%m%dT%H%M}",
        )
        events = [IncidentEvent(kind=EventKind.OPENED, at=opened, message=incident.description, data={"value": value})]
        for count, (at, breach) in enumerate(refired, start=2):  # each later breach (run) of the same trouble
            incident.last_seen = incident.timeline_at = at
            events.append(
                IncidentEvent(
                    kind=EventKind.REFIRED,
                    at=at,
                    message=f"New breach: {breach}",
                    data={"value": value, "occurrences": count, "new_breach": True},
                )
            )
        at = opened
        if jira:
            self._jira(incident)
        if status != IncidentStatus.OPEN:
            at = min(self.now, opened + dt.timedelta(minutes=rng.randrange(3, 25)))
            incident.acknowledged_at, incident.acknowledged_by = at, operator
            events.append(IncidentEvent(kind=EventKind.ACKNOWLEDGED, at=at, actor=operator, message="On it."))
            at = min(self.now, at + dt.timedelta(minutes=rng.randrange(5, 40)))
            events.append(IncidentEvent(kind=EventKind.COMMENTED, at=at, actor=operator, message=rng.choice(COMMENTS)))
        if status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED):
            at = min(self.now, at + dt.timedelta(minutes=rng.randrange(20, 180)))
            incident.resolved_at, incident.resolved_by = at, operator
            events.append(
                IncidentEvent(kind=EventKind.RESOLVED, at=at, actor=operator, message="Rerun succeeded; resolved.")
            )
        if status == IncidentStatus.CLOSED:
            at = min(self.now, at + dt.timedelta(hours=rng.randrange(2, 30)))
            incident.closed_at = at
            events.append(IncidentEvent(kind=EventKind.CLOSED, at=at, actor=operator, message="Post-mortem done."))
        self.items.append((incident, events))
        self.episodes[id(incident)] = episode

    def write(self, report: DemoReport) -> None:
        incidents = Incident.objects.bulk_create([incident for incident, _ in self.items], batch_size=BATCH)
        events = []
        for incident, timeline in zip(incidents, (e for _, e in self.items), strict=True):
            for event in timeline:
                event.incident = incident
                events.append(event)
        IncidentEvent.objects.bulk_create(events, batch_size=BATCH)
        report.incidents += len(incidents)
        report.events += len(events)
        self._states_write(incidents)

    def _states_write(self, incidents: list[Incident]) -> None:
        """What the engine remembers of every subject a rule fired for (RuleSubjectState): breaching
        while its latest incident is open or acknowledged, clear since it was resolved. So the
        engine goes on from here: it refreshes an open incident that breaches again and resolves
        one whose condition is clear, as it would have done with its own."""
        latest: dict[tuple[int, str], Incident] = {}
        for incident in sorted(incidents, key=lambda i: i.first_seen):
            if incident.rule_id is not None:
                latest[(incident.rule_id, incident.subject)] = incident
        states = []
        for (rule_id, subject), incident in latest.items():
            active = incident.status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)
            states.append(
                RuleSubjectState(
                    rule_id=rule_id,
                    subject=subject,
                    consecutive_breaches=incident.rule.open_after if active else 0,
                    episode=self.episodes[id(incident)],
                    clear_since=None if active else incident.resolved_at,
                    transitions=[incident.first_seen.isoformat()]
                    + ([] if active else [incident.resolved_at.isoformat()]),
                )
            )
        # A state left by a deleted loader of the same code is not the demo's to change.
        RuleSubjectState.objects.bulk_create(states, batch_size=BATCH, ignore_conflicts=True)


def incidents_plan(
    book: IncidentsWriter,
    loader: Loader,
    profile: str,
    plans: list[RunPlan],
    start: dt.datetime,
    now: dt.datetime,
    seed: int,
) -> None:
    """The loader's current trouble as an open or acknowledged incident, and a few of its past
    failures and overruns as incidents resolved or closed by the on-call operator."""
    book.rng = rng = random.Random(f"{seed}:{loader.loader_code}:incidents")
    version = loader.active_version
    limit = (version.max_duration_minutes or 30) * 60
    finished = [p.run for p in plans if p.run.status != RunStatus.RUNNING]
    if profile in CURRENT_TROUBLE and (finished or profile == LATE):
        rule_name, status, jira = CURRENT_TROUBLE[profile]
        last = finished[-1] if finished else None
        if profile == FAILING:
            streak = [p.run for p in plans if p.failed_streak]
            book.add(
                loader=loader,
                rule_name=rule_name,
                opened=streak[0].finished_at,
                status=status,
                value=1,
                text=f"run failed: {streak[0].error_text}",
                metrics={"run_id": str(last.run_id)},
                refired=[(run.finished_at, f"run failed: {run.error_text}") for run in streak[1:]],
                jira=jira,
                episode=f"run {last.run_id}@{last.finished_at.isoformat()}",  # as RunFailed names it
            )
        elif profile == LATE:
            grace = dt.timedelta(minutes=version.grace_minutes or 0)
            since = last.started_at if last is not None else start  # a short demo may end before its first run
            slots = schedule_slots(version.schedule_cron, version.schedule_timezone, since, now - grace)
            missed = list(slots) or [now - grace]

            def text(due: dt.datetime) -> str:
                return f"the run due at {due:%Y-%m-%d %H:%M} UTC did not start"

            book.add(
                loader=loader,
                rule_name=rule_name,
                opened=missed[0] + grace,
                status=status,
                value=max(1, int((now - missed[-1]).total_seconds() // 60)),
                text=text(missed[0]),
                metrics={"expected_at": missed[-1].isoformat()},
                refired=[(due + grace, text(due)) for due in missed[1:]],
                episode=f"due:{missed[-1].isoformat()}",  # each missed slot is its own breach (MissedRun)
            )
        elif profile == SLOW:
            book.add(
                loader=loader,
                rule_name=rule_name,
                opened=finished[-3].finished_at if len(finished) >= 3 else last.finished_at,
                status=status,
                value=round(last.duration_seconds),
                text=f"a run has taken {round(last.duration_seconds)} s (limit {limit} s)",
                metrics={"limit_seconds": limit},
                refired=[
                    (run.finished_at, f"a run has taken {round(run.duration_seconds)} s (limit {limit} s)")
                    for run in finished[-2:]
                ]
                if len(finished) >= 3
                else [],
                jira=jira,
                episode=f"run:{last.run_id}",  # each run out of bounds is its own breach (RunDuration)
            )
        else:
            book.add(
                loader=loader,
                rule_name=rule_name,
                opened=finished[-3].finished_at if len(finished) >= 3 else last.finished_at,
                status=status,
                value=last.rows_written,
                text=f"{last.rows_written} rows written, expected {version.expected_rows_min}–"
                f"{version.expected_rows_max}",
                metrics={"expected_min": version.expected_rows_min, "expected_max": version.expected_rows_max},
                refired=[(run.finished_at, f"{run.rows_written} rows written") for run in finished[-2:]]
                if len(finished) >= 3
                else [],
                episode=f"run:{last.run_id}",  # each run out of range is its own breach (VolumeOutOfRange)
            )
    recent = now - dt.timedelta(days=1)
    past = [
        r
        for r in finished
        if r.finished_at < recent and (r.status == RunStatus.FAILED or (r.duration_seconds or 0) > limit)
    ]
    for run in rng.sample(past, min(PAST_INCIDENTS_PER_LOADER, len(past))):
        failed = run.status == RunStatus.FAILED
        book.add(
            loader=loader,
            rule_name="Run failed" if failed else "Run too long",
            opened=run.finished_at,
            status=rng.choice([IncidentStatus.RESOLVED, IncidentStatus.RESOLVED, IncidentStatus.CLOSED]),
            value=1 if failed else round(run.duration_seconds),
            text=f"run failed: {run.error_text}" if failed else f"a run took {round(run.duration_seconds)} s",
            metrics={"run_id": str(run.run_id)},
            jira=rng.random() < 0.3,
        )


# --- the whole demo ----------------------------------------------------------------------------
