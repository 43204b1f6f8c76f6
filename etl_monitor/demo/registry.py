"""The demo's teams and loaders, written through the registry's own services (four-eyes holds)."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

from django.conf import settings

from etl_monitor.bootstrap import DEMO_LOADERS, DEMO_TAG
from etl_monitor.demo.catalogue import (
    CADENCES,
    DOMAINS,
    HEALTHY,
    MAX_LOADERS,
    REASON,
    REGIONS,
    TEAM_OF_SOURCE,
    TEAMS,
    TROUBLE_SHARE,
    TROUBLES,
    ZONES,
)
from etl_monitor.errors import InvalidInput
from loaders import services as loader_services
from loaders.models import Loader, LoaderVersion, Team, VersionState


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


def loader_specs(count: int, rng: random.Random) -> list[dict[str, Any]]:
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


def profiles_assign(specs: list[dict[str, Any]], rng: random.Random) -> dict[str, str]:
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


def registry_write(specs: list[dict[str, Any]], maker: Any, checker: Any) -> list[Loader]:
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


def pending_edits(loaders: dict[str, Loader], maker: Any) -> None:
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


def history_backdate(loaders: list[Loader], approved_at: dt.datetime) -> None:
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
