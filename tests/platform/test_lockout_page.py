"""The page a locked-out browser login gets looks like the admin's login page, says once when
to retry, and leads back to the login form it came from (the admin's or the browsable API's)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from etl_monitor.roles import Role

LIMIT = 3


@pytest.fixture(autouse=True)
def _limit(settings) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user(Role.EDITOR, username="alice")


def locked_page(client: Client, url: str) -> str:
    answers = [client.post(url, {"username": "alice", "password": f"guess-{n}"}) for n in range(LIMIT)]
    assert answers[-1].status_code == 429
    return answers[-1].content.decode()


def test_it_is_styled_as_the_admin_login_page(alice: User) -> None:
    page = locked_page(Client(), "/admin/login/")
    assert "admin/css/login.css" in page
    assert '<h1 id="site-name">' in page or "site-name" in page  # the admin's header, not a bare page


def test_it_says_the_retry_time_once(alice: User) -> None:
    page = locked_page(Client(), "/admin/login/")
    assert page.count(" UTC") == 1, page


def test_the_admin_login_leads_back_to_itself_keeping_next(alice: User) -> None:
    page = locked_page(Client(), "/admin/login/?next=/admin/loaders/loader/")
    assert 'href="/admin/login/?next=/admin/loaders/loader/"' in page


def test_the_browsable_api_login_leads_back_to_its_own_form(alice: User) -> None:
    page = locked_page(Client(), "/api/auth/login/")
    assert 'href="/api/auth/login/"' in page
    assert 'href="/admin/login/"' not in page
