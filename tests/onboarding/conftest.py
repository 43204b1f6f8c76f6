"""Fixtures of the onboarding tests: the checklist read the way the overview reads it, and the
setup built through the real services (loaders.services, signals_app.tokens and services)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from etl_monitor.bootstrap import DEMO_CHECKER, DEMO_MAKER
from etl_monitor.roles import Role, system_user_get
from loaders import services
from loaders.models import Team
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
def team(editor: User) -> Team:
    """tests/conftest.py's team, written through the service by a person: a team of one's own
    (its history names who created it), so ``new_loader`` and ``active_loader`` build on it."""
    team, _ = services.team_upsert(user=editor, slug="data-platform", data={"name": "Data Platform"})
    return team


@pytest.fixture
def demo_users(db: Any) -> tuple[User, User]:
    return system_user_get(DEMO_MAKER, Role.EDITOR), system_user_get(DEMO_CHECKER, Role.APPROVER)
