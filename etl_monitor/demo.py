"""Demo data: a realistic history so every page and dashboard is alive on first start.

``demo_generate`` writes teams and loaders through the registry's own services (created and
submitted by ``demo-maker``, approved by ``demo-checker``: four-eyes holds for demo data too), then
``days`` of runs and their standard signals following each loader's schedule in its time zone, and
incidents with their timelines. Runs, signals and incidents are bulk-inserted into the very models
and fields the ingest and the detection engine write (``signals_app.services._run_signals``,
``incidents.detection``), so the pages read them as they read real ones; with the subject states
and breach episodes the rule kinds name, so the engine, once it runs, goes on from them as from
its own incidents (refreshes what still breaches, resolves what is clear).

What it never does: announce incidents (the timeline is written straight to ``IncidentEvent``, not
through ``incidents.events``, so no notification is queued and no Jira issue created; the Jira keys
are stored text), create a notification channel, give a team a mailbox, or touch anything that is
not demo data. Every demo loader carries ``DEMO_TAG`` and every demo row is written by a user named
``DEMO_USER_PREFIX…``, so onboarding and ``demo_remove`` can tell demo data from a team's own work.

The same seed and the same ``now`` give the same data; times are relative to ``now``, and each
schedule slot draws its run from its own generator, so for a healthy loader a later ``now`` only
adds runs at the end.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
import uuid
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from etl_monitor.bootstrap import DEMO_CHECKER, DEMO_LOADERS, DEMO_MAKER, DEMO_TAG, DEMO_TEAMS, DEMO_USER_PREFIX
from etl_monitor.errors import InvalidInput, StateConflict
from etl_monitor.roles import Role, roles_sync, system_user_get
from incidents.detection import fingerprint_of
from incidents.models import DetectionRule, EventKind, Incident, IncidentEvent, IncidentStatus, RuleSubjectState
from loaders import services as loader_services
from loaders.models import Loader, LoaderVersion, Tag, Team, VersionState
from loaders.schedule import slot_utc
from signals_app.models import (
    RUN_SIGNAL_IDEMPOTENCY_PREFIX,
    MetricSource,
    MetricType,
    Run,
    RunStatus,
    Signal,
    SignalKey,
    ValidationStatus,
)
from signals_app.retention import signals_partitions_ensure
from signals_app.services import SIGNAL_COLUMNS, SignalRow

DEMO_OPERATOR = f"{DEMO_USER_PREFIX}operator"
DEMO_USERS = (DEMO_MAKER, DEMO_CHECKER, DEMO_OPERATOR)
DEFAULT_LOADERS = 12
DEFAULT_DAYS = 14
DEFAULT_SEED = 18
MAX_LOADERS = 2000
REASON = "Demo data"
BATCH = 2000

# Healthy loaders and the troubled ones the pages should show; see ``_profiles``.
HEALTHY, FAILING, LATE, SLOW, LOW_VOLUME, FLAKY = "healthy", "failing", "late", "slow", "low-volume", "flaky"
TROUBLES = (FAILING, LATE, SLOW, LOW_VOLUME, FLAKY)
TROUBLE_SHARE = 0.04

TEAMS = [
    *({"slug": t["slug"], "name": t["name"]} for t in DEMO_TEAMS),  # no mailbox: demo data sends nothing
    {"slug": "logistics", "name": "Logistics"},
    {"slug": "marketing-insights", "name": "Marketing Insights"},
]
DOMAINS = [
    ("ORDERS", "Orders", "shop-postgres", "dwh.orders"),
    ("PAYMENTS", "Payments", "psp-api", "dwh.payments"),
    ("SHIPMENTS", "Shipments", "wms", "dwh.shipments"),
    ("INVOICES", "Invoices", "erp", "dwh.invoices"),
    ("CUSTOMERS", "Customers", "crm-api", "dwh.customers"),
    ("PRODUCTS", "Product catalogue", "pim", "dwh.products"),
    ("RETURNS", "Returns", "shop-postgres", "dwh.returns"),
    ("LEDGER", "General ledger", "erp", "dwh.ledger"),
    ("CAMPAIGNS", "Marketing campaigns", "ads-api", "dwh.campaigns"),
    ("WEB-EVENTS", "Web events", "kafka", "lake.web_events"),
    ("PAYROLL", "Payroll", "hr-system", "dwh.payroll"),
    ("STOCK", "Stock levels", "wms", "dwh.stock"),
    ("SUPPLIERS", "Suppliers", "erp", "dwh.suppliers"),
    ("FX-RATES", "Exchange rates", "ecb-feed", "dwh.fx_rates"),
    ("TICKETS", "Support tickets", "helpdesk-api", "dwh.tickets"),
    ("FORECAST", "Demand forecast", "ml-platform", "dwh.forecast"),
]
REGIONS = ["EU", "US", "APAC", "UK", "LATAM"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Singapore", "Europe/London", "Australia/Sydney"]
TEAM_OF_SOURCE = {"erp": "finance-analytics", "psp-api": "finance-analytics", "hr-system": "finance-analytics"}


@dataclass(frozen=True)
class Cadence:
    name: str
    cron: str  # {m} minute, {h} hour, {h2} a second hour
    label: str
    weight: int
    duration_s: tuple[int, int]  # typical duration range of a run
    grace: int
    severity: str


CADENCES = [
    Cadence("15MIN", "*/15 * * * *", "every 15 minutes", 3, (20, 120), 5, "MEDIUM"),
    Cadence("HOURLY", "{m} * * * *", "hourly", 20, (60, 480), 10, "MEDIUM"),
    Cadence("4H", "{m} */4 * * *", "every four hours", 20, (120, 900), 15, "MEDIUM"),
    Cadence("DAILY", "{m} {h} * * *", "daily", 32, (300, 2400), 30, "HIGH"),
    Cadence("TWICE-DAILY", "{m} {h},{h2} * * *", "twice a day", 12, (240, 1500), 20, "HIGH"),
    Cadence("WEEKDAYS", "{m} {h} * * 1-5", "on weekdays", 13, (300, 1800), 30, "LOW"),
]

ERRORS = [
    'psycopg.OperationalError: connection to server at "{host}" failed: timeout expired',
    'duplicate key value violates unique constraint "{table}_pkey"',
    "HTTP 503 from the source API after 5 retries",
    "S3 upload failed: SlowDown (Please reduce your request rate)",
    'column "amount_eur" does not exist',
]
COMMENTS = [
    "The source database was restarted for patching at the same time; rerunning.",
    "Raised the connection timeout to 60 s; the rerun went through.",
    "Upstream export arrived late; the load waited for the lock on the target table.",
    "Partial extract: the source's nightly snapshot was still being written.",
    "Index rebuild on the target table slowed the load down; moved the rebuild to Sunday.",
]


class DemoPresent(StateConflict):
    """The database already holds the demo (a loader tagged DEMO_TAG)."""


@dataclass
class DemoReport:
    """What ``demo_generate`` wrote, for the command to print and the tests to check."""

    loaders: int = 0
    active: int = 0
    days: int = 0
    runs: int = 0
    signals: int = 0
    incidents: int = 0
    events: int = 0
    partitions: int = 0
    seconds: float = 0.0
    profiles: dict[str, str] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # what ``reset`` removed first
    left_out: list[str] = field(default_factory=list)  # codes taken by loaders that are not the demo's


def demo_arguments_check(*, loaders: int, days: int) -> None:
    """Refuse sizes the demo cannot honour (InvalidInput naming the argument): at least one loader
    and at most MAX_LOADERS; at least one day and no more than the signals are kept
    (``SIGNAL_RETENTION_DAYS``), which the next retention run would delete again."""
    errors: dict[str, list[str]] = {}
    if not 1 <= loaders <= MAX_LOADERS:
        errors["loaders"] = [f"Must be between 1 and {MAX_LOADERS}; got {loaders}."]
    retention = settings.SIGNAL_RETENTION_DAYS
    if not 1 <= days <= retention:
        errors["days"] = [
            f"Must be between 1 and {retention} (SIGNAL_RETENTION_DAYS: older signals are deleted); got {days}."
        ]
    if errors:
        raise InvalidInput(errors)


def demo_present() -> bool:
    return Loader.objects.filter(tags__name=DEMO_TAG).exists()


# --- the registry ------------------------------------------------------------------------------


def _loader_specs(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """The three loaders of the first demo, then generated ones: a domain, a region past the
    first sixteen, a cadence (weighted: most loaders run daily or hourly) and a time zone."""
    specs = [dict(d, tags=list(d["tags"])) for d in DEMO_LOADERS][:count]
    for index in range(count - len(specs)):
        code, title, source, target = DOMAINS[index % len(DOMAINS)]
        lap = index // len(DOMAINS)
        parts = [code]
        if lap:
            parts.append(REGIONS[(lap - 1) % len(REGIONS)])
        cadence = rng.choices(CADENCES, weights=[c.weight for c in CADENCES])[0]
        parts.append(cadence.name)
        if lap > len(REGIONS):
            parts.append(str(1 + (lap - 1) // len(REGIONS)))
        zone = rng.choice(ZONES)
        hour = rng.randrange(0, 7)
        cron = cadence.cron.format(m=rng.randrange(0, 60, 5), h=hour, h2=hour + 12)
        rows = int(10 ** rng.uniform(3, 6.3))
        typical = rng.uniform(*cadence.duration_s)
        region = f" ({parts[1]})" if lap else ""
        specs.append(
            {
                "loader_code": "-".join(parts),
                "name": f"{title}{region} {cadence.label}",
                "owner": TEAM_OF_SOURCE.get(source, TEAMS[index % len(TEAMS)]["slug"]),
                "tags": [DEMO_TAG, cadence.name.lower(), source],
                "description": f"Loads {title.lower()} from {source} into {target}, {cadence.label}.",
                "source_system": source,
                "target": target,
                "schedule_cron": cron,
                "schedule_timezone": zone,
                "grace_minutes": cadence.grace,
                "max_duration_minutes": max(2, math.ceil(typical * 2 / 60)),
                "expected_rows_min": max(1, rows // 2),
                "expected_rows_max": rows * 2,
                "freshness_sla_minutes": 1440 + 120 if cadence.name == "DAILY" else None,
                "default_severity": cadence.severity,
            }
        )
    return specs


def _profiles(specs: list[dict[str, Any]], rng: random.Random) -> dict[str, str]:
    """Which loaders are in trouble, and how. The first demo's two active loaders stay healthy; of
    the generated ones, TROUBLE_SHARE each are failing, late, slow, low-volume and flaky (at least
    one of each while there are enough), picked at random so no domain is always the bad one."""
    first = {d["loader_code"] for d in DEMO_LOADERS}
    generated = [s["loader_code"] for s in specs if s["loader_code"] not in first]
    each = max(1, round(len(generated) * TROUBLE_SHARE))
    picked = rng.sample(generated, min(len(generated), each * len(TROUBLES)))
    profiles = dict.fromkeys(generated, HEALTHY)
    for index, code in enumerate(picked):
        profiles[code] = TROUBLES[index % len(TROUBLES)]
    return profiles


def _registry_write(specs: list[dict[str, Any]], maker: Any, checker: Any) -> list[Loader]:
    """Teams and loaders through the services: created and submitted by the maker, approved by
    the checker; CRM-SYNC stays a draft, SALES-DAILY (and one generated loader) gets a second
    version waiting for approval."""
    existing = set(Team.objects.filter(slug__in=[t["slug"] for t in TEAMS]).values_list("slug", flat=True))
    for team in TEAMS:
        if team["slug"] not in existing:  # a team of that slug that is there already is not the demo's
            loader_services.team_upsert(user=maker, slug=team["slug"], data={"name": team["name"]}, reason=REASON)
    drafts = [s for s in specs if s["loader_code"] == "CRM-SYNC"]
    submitted = [s for s in specs if s["loader_code"] != "CRM-SYNC"]
    loaders = loader_services.loaders_create_many(user=maker, rows=submitted, reason=REASON, submit=True)
    if drafts:
        loaders += loader_services.loaders_create_many(user=maker, rows=drafts, reason=REASON)
    for loader in loaders:
        version = loader.open_version
        if version is not None and version.state == VersionState.PENDING_APPROVAL:
            loader_services.loader_version_approve(user=checker, version=version, comment=REASON)
    return loaders


def _pending_edits(loaders: dict[str, Loader], maker: Any) -> None:
    edits = [("SALES-DAILY", {"max_duration_minutes": 60}, "Month-end runs are longer")]
    generated = [code for code in loaders if code not in {d["loader_code"] for d in DEMO_LOADERS}]
    if len(generated) > 5:
        code = generated[5]
        version = loaders[code].active_version
        edits.append((code, {"expected_rows_max": version.expected_rows_max * 2}, "Volumes doubled after the merger"))
    for code, data, reason in edits:
        if code not in loaders:
            continue
        loader = loader_services.loader_edit(user=maker, loader=loaders[code], data=data, reason=reason)
        loader_services.loader_version_submit(user=maker, version=loader.open_version, comment=reason)


def _history_backdate(loaders: list[Loader], approved_at: dt.datetime) -> None:
    """The first versions were approved before the history starts: a missed slot of the demo's
    days counts as missed (a slot before the approval is not the version's to miss), and the
    loader page's chart shows no approval marker at today's edge."""
    ids = [loader.pk for loader in loaders]
    active = LoaderVersion.objects.filter(loader_id__in=ids, state=VersionState.ACTIVE)
    active_ids = list(active.values_list("pk", flat=True))
    active.update(created_at=approved_at, submitted_at=approved_at, decided_at=approved_at, updated_at=approved_at)
    LoaderVersion.history.filter(id__in=active_ids).update(history_date=approved_at)
    Loader.objects.filter(pk__in=ids).update(created_at=approved_at)
    Loader.objects.filter(pk__in=ids, first_activated_at__isnull=False).update(first_activated_at=approved_at)
    Loader.history.filter(id__in=ids).update(history_date=approved_at)


# --- runs and signals --------------------------------------------------------------------------


def _slots(cron: str, zone_name: str, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """The schedule's slots in (start, end], in UTC, read in the loader's time zone."""
    zone = zoneinfo.ZoneInfo(zone_name or "UTC")
    walk = croniter(cron, start.astimezone(zone))
    while True:
        slot = slot_utc(walk.get_next(dt.datetime), zone)
        if slot > end:
            return
        yield slot


@dataclass
class _RunPlan:
    run: Run
    failed_streak: bool = False  # one of the failures the loader's open incident is about


def _runs_plan(
    loader: Loader, version: LoaderVersion, profile: str, start: dt.datetime, now: dt.datetime, seed: int
) -> list[_RunPlan]:
    """One run per slot of the schedule, shaped by the loader's profile: a failing loader's last
    runs failed, a late one's last two slots have no run, a slow one's runs grow past their limit,
    a low-volume one's last runs write a fraction of the expected rows, a flaky one fails often.

    Each slot draws from its own random generator (seed, loader, slot), so a healthy loader's run
    of a slot is the same whenever the demo is loaded: a later ``now`` only adds runs at the end."""
    slots = list(_slots(version.schedule_cron, version.schedule_timezone, start, now))
    grace = dt.timedelta(minutes=version.grace_minutes or 0)
    due = [s for s in slots if s <= now - grace]
    if profile == LATE and len(due) >= 2:
        slots = [s for s in slots if s < due[-2]]  # the last two slots that were due never ran
    limit = (version.max_duration_minutes or 30) * 60
    typical = limit / 2.2
    rows_min, rows_max = version.expected_rows_min or 1000, version.expected_rows_max or 10000
    rows_typical = (rows_min + rows_max) / 2.5
    plans = []
    for index, slot in enumerate(slots):
        from_end = len(slots) - index  # 1 for the latest run
        rng = random.Random(f"{seed}:{loader.loader_code}:{slot:%Y%m%dT%H%M}")
        started = slot + dt.timedelta(seconds=rng.uniform(2, 90))
        if started > now:
            continue  # the job starts a little after its slot: not yet
        duration = typical * rng.uniform(0.75, 1.25)
        rows = int(rows_typical * rng.uniform(0.8, 1.2) * (1.15 if slot.weekday() < 5 else 0.7))
        fail_rate = {HEALTHY: 0.01, FLAKY: 0.12}.get(profile, 0.03)
        failed = rng.random() < fail_rate
        streak = False
        if profile == FAILING and from_end <= 3:
            failed = streak = True
        if profile == SLOW:
            progress = index / max(1, len(slots) - 1)
            duration = typical * (0.9 + 0.9 * progress**3) * rng.uniform(0.9, 1.1)
            if from_end <= 3:
                duration = limit * rng.uniform(1.3, 1.7)
        if profile == LOW_VOLUME and from_end <= 3:
            rows = int(rows_min * rng.uniform(0.05, 0.2))
        if failed:
            duration *= rng.uniform(0.1, 0.6)
            rows = 0
        finished = started + dt.timedelta(seconds=duration)
        running = finished > now
        if running and profile != HEALTHY:
            continue  # a troubled loader's story ends with its last finished run
        run = Run(
            run_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            loader=loader,
            loader_version=version,
            started_at=started,
            correlation_id=f"{loader.loader_code.lower()}-{started:%Y%m%dT%H%M}",
            source="API",
        )
        if not running:
            run.status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
            run.finished_at = finished
            run.duration_seconds = round(duration, 3)
            run.rows_read = 0 if failed else int(rows * rng.uniform(1.0, 1.05))
            run.rows_written = rows
            run.rows_rejected = 0 if failed else int(rows * rng.uniform(0, 0.002))
            run.exit_status = 1 if failed else 0
            if failed:
                run.error_text = rng.choice(ERRORS).format(
                    host=version.connection_host or f"{version.source_system or 'source'}.internal",
                    table=(version.target or "target").split(".")[-1],
                )
        plans.append(_RunPlan(run, failed_streak=streak))
    return plans


# Every column of a run but its id, so a field added to Run is written here too.
RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.primary_key]
RUN_COLUMNS = tuple(f.column for f in RUN_FIELDS)


def _run_signal_rows(run: Run, run_pk: int, received: dt.datetime) -> list[SignalRow]:
    """The standard signals of a finished run, as ``signals_app.services._run_signals`` writes them."""
    status = ValidationStatus.SUCCESS if run.status == RunStatus.SUCCEEDED else ValidationStatus.FAILED
    prefix = f"{RUN_SIGNAL_IDEMPOTENCY_PREFIX}{run.run_id}:"

    def row(key: str, text: str, number: float | None, metric_type: str) -> SignalRow:
        return SignalRow(
            run.loader_id,
            key,
            text,
            number,
            status,
            metric_type,
            MetricSource.ETL,
            run.finished_at,
            received,
            run.correlation_id,
            run_pk,
            None,  # attributes
            prefix + key,
            False,  # loader_paused
            False,  # no_active_version
        )

    return [
        row("run_status", run.status, None, MetricType.RUN_STATUS),
        row("run_duration_seconds", f"{run.duration_seconds:.3f}", run.duration_seconds, MetricType.DURATION_SECONDS),
        row("rows_read", str(run.rows_read), float(run.rows_read), MetricType.ROW_COUNT),
        row("rows_written", str(run.rows_written), float(run.rows_written), MetricType.ROW_COUNT),
        row("rows_rejected", str(run.rows_rejected), float(run.rows_rejected), MetricType.ROW_COUNT),
    ]


def _rows_insert(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert plain rows into ``model``'s table: COPY on PostgreSQL (as the ingest writes large
    batches), one prepared INSERT run for all rows elsewhere. Tens of thousands of model instances
    through ``bulk_create`` would take most of a minute."""
    if not rows:
        return
    table, names = model._meta.db_table, ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 - the models' own tables
            _sqlite_values(model, columns, rows),
        )


def _sqlite_values(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[list]:
    """The rows as the ORM stores them in SQLite: times as naive UTC text (so lookups compare
    alike), UUIDs as hex. A run's signals share their two times: each is converted once."""
    fields = {f.column: f for f in model._meta.concrete_fields}
    times = [i for i, c in enumerate(columns) if isinstance(fields[c], models.DateTimeField)]
    uuids = [i for i, c in enumerate(columns) if isinstance(fields[c], models.UUIDField)]
    texts: dict[dt.datetime, str] = {}
    values = []
    for row in rows:
        value = list(row)
        for i in times:
            moment = value[i]
            if moment is not None:
                text = texts.get(moment)
                if text is None:
                    text = texts[moment] = str(moment.astimezone(dt.UTC).replace(tzinfo=None))
                value[i] = text
        for i in uuids:
            value[i] = value[i].hex
        values.append(value)
    return values


def _runs_write(plans: list[_RunPlan], report: DemoReport) -> None:
    """The planned runs, then the standard signals of the finished ones and their idempotency keys
    (SignalKey, as the ingest claims them)."""
    if not plans:
        return
    written = timezone.now()
    runs = [p.run for p in plans]
    _rows_insert(
        Run,
        RUN_COLUMNS,
        [
            tuple(written if f.name in ("created_at", "updated_at") else getattr(run, f.attname) for f in RUN_FIELDS)
            for run in runs
        ],
    )
    pks = dict(
        Run.objects.filter(loader_id__in={run.loader_id for run in runs}).values_list("run_id", "pk").iterator(BATCH)
    )
    report.runs += len(runs)
    signals: list[SignalRow] = []
    for run in runs:
        if run.status != RunStatus.RUNNING:
            signals.extend(_run_signal_rows(run, pks[run.run_id], run.finished_at + dt.timedelta(seconds=1)))
    _rows_insert(Signal, SIGNAL_COLUMNS, signals)
    _rows_insert(
        SignalKey,
        ("loader_id", "key", "created_at"),
        [(s.loader_id, s.idempotency_key, s.received_at) for s in signals],
    )
    report.signals += len(signals)


# --- incidents ---------------------------------------------------------------------------------

# Profile → (rule name, status of the incident about the latest trouble, with a Jira key?)
CURRENT_TROUBLE = {
    FAILING: ("Run failed", IncidentStatus.OPEN, True),
    LATE: ("Missed run", IncidentStatus.OPEN, False),
    SLOW: ("Run too long", IncidentStatus.ACKNOWLEDGED, True),
    LOW_VOLUME: ("Volume out of range", IncidentStatus.ACKNOWLEDGED, False),
}
PAST_INCIDENTS_PER_LOADER = 3


class _Incidents:
    """Incidents and their timelines, collected for two bulk inserts."""

    def __init__(self, rules: dict[str, DetectionRule], operator: Any, now: dt.datetime) -> None:
        self.rules, self.operator, self.now = rules, operator, now
        self.rng = random.Random()  # reseeded for each loader (``_incidents_plan``)
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


def _incidents_plan(
    book: _Incidents,
    loader: Loader,
    profile: str,
    plans: list[_RunPlan],
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
            slots = _slots(version.schedule_cron, version.schedule_timezone, since, now - grace)
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


def demo_generate(
    *,
    loaders: int = DEFAULT_LOADERS,
    days: int | None = None,
    seed: int = DEFAULT_SEED,
    now: dt.datetime | None = None,
    reset: bool = False,
) -> DemoReport:
    """Write the demo: ``loaders`` loaders with ``days`` days of history up to ``now`` (by default
    DEFAULT_DAYS, or fewer when signals are kept for fewer days); with ``reset``, remove the demo
    that is there first (``demo_remove``).

    Raises InvalidInput for sizes ``demo_arguments_check`` refuses and DemoPresent when the
    database already holds the demo (nothing is written then). All or nothing: a refused or failed
    demo leaves the previous one in place."""
    if days is None:
        days = min(DEFAULT_DAYS, settings.SIGNAL_RETENTION_DAYS)
    demo_arguments_check(loaders=loaders, days=days)
    began = time.monotonic()
    now = (now or timezone.now()).replace(microsecond=0)
    start = now - dt.timedelta(days=days)
    rng = random.Random(seed)
    report = DemoReport(days=days)
    with transaction.atomic():
        if reset:
            report.removed = demo_remove()
        if demo_present():
            raise DemoPresent("The demo data is already in this database.")
        report.partitions = len(signals_partitions_ensure(today=now.date(), days_before=days + 1, days_ahead=1))
        roles_sync()
        maker = system_user_get(DEMO_MAKER, Role.EDITOR)
        checker = system_user_get(DEMO_CHECKER, Role.APPROVER)
        operator = system_user_get(DEMO_OPERATOR, Role.OPERATOR)
        specs = _loader_specs(loaders, rng)
        # A loader of the same code that is there already is not the demo's: it is left alone.
        taken = Loader.objects.filter(loader_code__in=[spec["loader_code"] for spec in specs])
        report.left_out = sorted(taken.values_list("loader_code", flat=True))
        specs = [spec for spec in specs if spec["loader_code"] not in report.left_out]
        created = _registry_write(specs, maker, checker)
        _history_backdate(created, start - dt.timedelta(days=1, hours=3))
        by_code = {loader.loader_code: loader for loader in Loader.objects.filter(pk__in=[x.pk for x in created])}
        _pending_edits(by_code, maker)
        profiles = _profiles(specs, rng)
        rules = {r.name: r for r in DetectionRule.objects.filter(name__in=[v[0] for v in CURRENT_TROUBLE.values()])}
        book = _Incidents(rules, operator, now)
        plans: list[_RunPlan] = []
        for spec in specs:
            loader = by_code[spec["loader_code"]]
            version = loader.active_version
            if version is None:
                continue
            profile = profiles.get(loader.loader_code, HEALTHY)
            report.profiles[loader.loader_code] = profile
            loader_plans = _runs_plan(loader, version, profile, start, now, seed)
            _incidents_plan(book, loader, profile, loader_plans, start, now, seed)
            plans.extend(loader_plans)
            if len(plans) >= BATCH * 4:
                _runs_write(plans, report)
                plans = []
        _runs_write(plans, report)
        book.write(report)
        report.loaders = len(created)
        report.active = len(report.profiles)
    report.seconds = round(time.monotonic() - began, 2)
    return report


@transaction.atomic
def demo_remove() -> dict[str, int]:
    """Remove the demo and nothing else: the loaders tagged DEMO_TAG with their runs, signals,
    tokens, incidents and the engine's states about them, the teams the demo created and its tag
    when no other loader uses them, and the demo users. Returns how many loaders, runs, signals and incidents went."""
    ids = list(Loader.objects.filter(tags__name=DEMO_TAG).values_list("pk", flat=True))
    removed = {
        "incidents": Incident.objects.filter(loader_id__in=ids).delete()[1].get("incidents.Incident", 0),
        # Signals first and without the ORM's cascade collector (hundreds of thousands of rows).
        "signals": Signal.objects.filter(loader_id__in=ids)._raw_delete(Signal.objects.db),
    }
    SignalKey.objects.filter(loader_id__in=ids)._raw_delete(SignalKey.objects.db)
    removed["runs"] = Run.objects.filter(loader_id__in=ids)._raw_delete(Run.objects.db)
    codes = list(Loader.objects.filter(pk__in=ids).values_list("loader_code", flat=True))
    RuleSubjectState.objects.filter(subject__in=codes).delete()
    removed["loaders"] = Loader.objects.filter(pk__in=ids).delete()[1].get("loaders.Loader", 0)
    created = Team.history.filter(history_type="+", history_user__username__in=DEMO_USERS).values("id")
    Team.objects.filter(pk__in=created, loaders__isnull=True).delete()
    Tag.objects.filter(name=DEMO_TAG, loaders__isnull=True).delete()
    get_user_model().objects.filter(username__in=DEMO_USERS).delete()
    return removed
