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
import random
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from etl_monitor.bootstrap import DEMO_CHECKER, DEMO_MAKER, DEMO_TAG
from etl_monitor.demo.catalogue import (
    BATCH,
    DEFAULT_DAYS,
    DEFAULT_LOADERS,
    DEFAULT_SEED,
    DEMO_OPERATOR,
    DEMO_USERS,
    HEALTHY,
    DemoPresent,
    DemoReport,
)
from etl_monitor.demo.incidents import CURRENT_TROUBLE, IncidentsWriter, incidents_plan
from etl_monitor.demo.registry import (
    demo_arguments_check,
    demo_present,
    history_backdate,
    loader_specs,
    pending_edits,
    profiles_assign,
    registry_write,
)
from etl_monitor.demo.runs import RunPlan, runs_plan, runs_write
from etl_monitor.roles import Role, roles_sync, system_user_get
from incidents.models import DetectionRule, Incident, RuleSubjectState
from loaders.models import Loader, Tag, Team
from signals_app.models import Run, Signal, SignalKey
from signals_app.retention import signals_partitions_ensure

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_LOADERS",
    "DEFAULT_SEED",
    "DEMO_OPERATOR",
    "DemoPresent",
    "DemoReport",
    "demo_generate",
    "demo_remove",
]


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
        specs = loader_specs(loaders, rng)
        # A loader of the same code that is there already is not the demo's: it is left alone.
        taken = Loader.objects.filter(loader_code__in=[spec["loader_code"] for spec in specs])
        report.left_out = sorted(taken.values_list("loader_code", flat=True))
        specs = [spec for spec in specs if spec["loader_code"] not in report.left_out]
        created = registry_write(specs, maker, checker)
        history_backdate(created, start - dt.timedelta(days=1, hours=3))
        by_code = {loader.loader_code: loader for loader in Loader.objects.filter(pk__in=[x.pk for x in created])}
        pending_edits(by_code, maker)
        profiles = profiles_assign(specs, rng)
        rules = {r.name: r for r in DetectionRule.objects.filter(name__in=[v[0] for v in CURRENT_TROUBLE.values()])}
        book = IncidentsWriter(rules, operator, now)
        plans: list[RunPlan] = []
        for spec in specs:
            loader = by_code[spec["loader_code"]]
            version = loader.active_version
            if version is None:
                continue
            profile = profiles.get(loader.loader_code, HEALTHY)
            report.profiles[loader.loader_code] = profile
            loader_plans = runs_plan(loader, version, profile, start, now, seed)
            incidents_plan(book, loader, profile, loader_plans, start, now, seed)
            plans.extend(loader_plans)
            if len(plans) >= BATCH * 4:
                runs_write(plans, report)
                plans = []
        runs_write(plans, report)
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
