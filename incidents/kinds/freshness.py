"""The ``freshness`` rule kind: the contract's freshness SLA, enforced.

A loader whose data is older than its ACTIVE version's ``freshness_sla_minutes`` is stale. Its own
module, as every new kind (``incidents/kinds/__init__.py``), beside the ETL kinds it borrows the
contract reading from.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Max, QuerySet

from etl_monitor.humanize import duration_words
from incidents.kinds import Measurement, RuleKind, human_time, kind_register
from incidents.kinds.etl import active_versions, window_start
from loaders.models import Loader
from signals_app.models import Run, RunStatus, Signal, ValidationStatus


@kind_register
class Freshness(RuleKind):
    """The loader's data is older than its ACTIVE version's freshness SLA.

    The data is as fresh as the latest successful run (its finish) or the latest signal the job
    sent that did not fail, whichever is later — and never older than the version's approval: a
    contract approved a moment ago gives its loader the SLA to deliver. Loaders without an active
    version or without an SLA are not measured, nor are paused ones (the rule's scope leaves them
    out), so they are never stale. A stale loader stays the same breach until data arrives; the
    condition clears, and the incident resolves, once fresh data does. Lookups reach back at most
    the rule's window: data older than that reads as "none in the window"."""

    name = "freshness"
    description = "Data older than the active version's freshness SLA."
    self_deciding = True

    def share_key(self, rule: Any) -> Any:
        return rule.window_seconds

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        versions = {
            loader_id: version
            for loader_id, version in active_versions(loaders).items()
            if version.freshness_sla_minutes
        }
        if not versions:
            return []
        since = window_start(rule, now)
        fresh_at: dict[int, dt.datetime] = dict(
            Run.objects.filter(
                loader_id__in=versions, status=RunStatus.SUCCEEDED, finished_at__gte=since, finished_at__lte=now
            )
            .values("loader_id")
            .annotate(last=Max("finished_at"))
            .values_list("loader_id", "last")
        )

        def stale(loader_id: int) -> bool:
            limit = now - dt.timedelta(minutes=versions[loader_id].freshness_sla_minutes)
            return loader_id not in fresh_at or fresh_at[loader_id] < limit

        # Signals only for the loaders their runs do not keep fresh (jobs that report by signals alone).
        by_signals = [loader_id for loader_id in versions if stale(loader_id)]
        if by_signals:
            rows = (
                Signal.objects.filter(loader_id__in=by_signals, captured_at__gte=since, captured_at__lte=now)
                .exclude(validation_status=ValidationStatus.FAILED)
                .values("loader_id")
                .annotate(last=Max("captured_at"))
                .values_list("loader_id", "last")
            )
            for loader_id, last in rows:
                if loader_id not in fresh_at or last > fresh_at[loader_id]:
                    fresh_at[loader_id] = last
        codes = dict(Loader.objects.filter(pk__in=versions).values_list("pk", "loader_code"))
        found = []
        for loader_id, version in versions.items():
            data_at = fresh_at.get(loader_id)
            reference = max((t for t in (data_at, version.decided_at) if t is not None), default=None)
            sla = dt.timedelta(minutes=version.freshness_sla_minutes)
            age = now - (reference or since)
            zone = version.schedule_timezone
            last_text = (
                human_time(data_at, zone) if data_at else f"none in the last {duration_words(rule.window_seconds)}"
            )
            found.append(
                Measurement(
                    codes[loader_id],
                    age.total_seconds() / 60.0,
                    loader_id=loader_id,
                    breached=age > sla,
                    details={
                        "sla_minutes": version.freshness_sla_minutes,
                        "age": duration_words(age.total_seconds()),
                        "last_data_at": last_text,
                        "fresh_since": reference.isoformat() if reference else None,
                    },
                    # Stale since the same data: the same breach, until newer data arrives.
                    episode=f"fresh:{reference.isoformat() if reference else 'none'}",
                    summary=f"no fresh data for {duration_words(age.total_seconds())} (last data: {last_text})"
                    if age > sla
                    else f"fresh data at {last_text}",
                )
            )
        return found
