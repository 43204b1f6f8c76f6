"""Fixtures of the onboarding tests: the checklist read the way the overview reads it, and the
setup built through the real services (loaders.services, signals_app.tokens and services)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from etl_monitor.bootstrap import DEMO_CHECKER, DEMO_MAKER
from etl_monitor.roles import Role, system_user_get
from loaders import services
from loaders.models import Loader, Team
from onboarding.models import Step
from onboarding.selectors import checklist_read

BASE = "https://etl.example.com"


def done(step: Step) -> bool:
    return step in checklist_read(base_url=BASE).done_steps


def state(step: Step) -> Any:
    return next(s for s in checklist_read(base_url=BASE).steps if s.step == step)


@pytest.fixture(autouse=True)
def _no_grafana(settings: Any) -> None:
    settings.GRAFANA_URL = ""


@pytest.fixture
def own_team(editor: User) -> Team:
    team, _ = services.team_upsert(user=editor, slug="data-platform", data={"name": "Data Platform"})
    return team


@pytest.fixture
def make_own_loader(editor: User, own_team: Team) -> Callable[..., Loader]:
    def make(code: str = "SALES-DAILY", **data: Any) -> Loader:
        payload = {"loader_code": code, "name": f"{code} loader", "owner": own_team.slug, **data}
        return services.loader_create(user=editor, data=payload)

    return make


@pytest.fixture
def approved_loader(make_own_loader: Callable[..., Loader], editor: User, approver: User) -> Loader:
    loader = make_own_loader()
    draft = services.loader_version_submit(user=editor, version=loader.open_version)
    services.loader_version_approve(user=approver, version=draft)
    return Loader.objects.get(pk=loader.pk)


@pytest.fixture
def demo_users(db: Any) -> tuple[User, User]:
    return system_user_get(DEMO_MAKER, Role.EDITOR), system_user_get(DEMO_CHECKER, Role.APPROVER)
