"""Loaders in every health state, written straight to the tables: these tests read, they do not
exercise the approval workflow (tests/loaders does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from loaders.models import Loader, LoaderVersion, Team, VersionState
from signals_app.models import Run, RunStatus
from tests.conftest import system_loaders_remove

# A fixed moment: Thursday 3 December 2026, 12:00 UTC.
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _registry_without_system_loaders(request: pytest.FixtureRequest) -> None:
    system_loaders_remove(request)


@pytest.fixture
def ops_team(db: Any) -> Team:
    return Team.objects.create(slug="ops-data", name="Ops Data")


@pytest.fixture
def make_loader(ops_team: Team) -> Callable[..., Loader]:
    """A loader with an ACTIVE version (approved a week before NOW) unless ``active=False``."""

    def make(
        code: str,
        *,
        cron: str = "0 * * * *",
        timezone: str = "UTC",
        grace: int = 15,
        sla: int | None = None,
        paused: bool = False,
        active: bool = True,
        approved: dt.datetime = NOW - dt.timedelta(days=7),
        team: Team | None = None,
        **contract: Any,
    ) -> Loader:
        loader = Loader.objects.create(
            loader_code=code, name=f"{code} job", owner=team or ops_team, is_paused=paused, first_activated_at=approved
        )
        LoaderVersion.objects.create(
            loader=loader,
            number=1,
            state=VersionState.ACTIVE if active else VersionState.DRAFT,
            schedule_cron=cron,
            schedule_timezone=timezone,
            grace_minutes=grace,
            freshness_sla_minutes=sla,
            decided_at=approved if active else None,
            **contract,
        )
        return loader

    return make


def make_run(
    loader: Loader,
    status: str = RunStatus.SUCCEEDED,
    *,
    started: dt.datetime,
    seconds: float | None = 60.0,
    rows: int | None = 500,
) -> Run:
    finished = None if status == RunStatus.RUNNING else started + dt.timedelta(seconds=seconds or 0)
    return Run.objects.create(
        loader=loader,
        status=status,
        started_at=started,
        finished_at=finished,
        duration_seconds=None if status == RunStatus.RUNNING else seconds,
        rows_written=rows,
    )
