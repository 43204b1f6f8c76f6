from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from etl_monitor.roles import Role
from tests.conftest import system_loaders_remove


@pytest.fixture(autouse=True)
def _registry_without_system_loaders(request: pytest.FixtureRequest) -> None:
    system_loaders_remove(request)


@pytest.fixture
def auth_token_unthrottled(settings: Any) -> Iterator[None]:
    """DRF's per-address rate limit of POST /api/v1/auth/token/ out of the way (tests log in more
    often than 10 times a minute), and its history of this test's addresses dropped afterwards so
    later tests of that limit start from zero."""
    from django.core.cache import cache

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth-token": "10000/min"}}
    yield
    cache.delete_many(
        [f"throttle_auth-token_{ip}" for ip in ("127.0.0.1", "10.0.0.2", *(f"192.0.2.{n}" for n in range(256)))]
    )


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    """An Editor (the login and token tests' account under attack)."""
    return make_user(Role.EDITOR, username="alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    """A Viewer: a second account."""
    return make_user(Role.VIEWER, username="bob")
