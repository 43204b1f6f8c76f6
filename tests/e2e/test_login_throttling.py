"""Guessing passwords on any login surface of the running platform locks the account out, however
the guesser varies X-Forwarded-For (which any client sets): after the wrong guesses, even the
right password is refused."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform, admin_login, form_login

pytestmark = pytest.mark.services

GUESSES = 20


def forwarded(n: int) -> dict[str, str]:
    """A different made-up client address on every request, as a botnet or a lying client sends."""
    return {"X-Forwarded-For": f"203.0.113.{n % 250 + 1}, 198.51.100.{n % 200 + 1}"}


def guesses_then_right_password(login, username: str, password: str) -> tuple[list[int], requests.Response]:
    statuses = [login(username, f"wrong-{n}-{password}", forwarded(n)).status_code for n in range(GUESSES)]
    return statuses, login(username, password, forwarded(GUESSES))


def test_the_admin_login_locks_out_a_guessed_account(platform: Platform):
    session = requests.Session()
    username = "e2e-victim-admin"

    statuses, right = guesses_then_right_password(
        lambda user, password, headers: admin_login(session, platform.base, user, password, headers=headers),
        username,
        platform.passwords[username],
    )

    assert 302 not in statuses
    assert right.status_code != 302 and not session.cookies.get("sessionid"), (
        f"logged in after {GUESSES} wrong passwords: {statuses}"
    )


def test_the_browsable_api_login_locks_out_a_guessed_account(platform: Platform):
    session = requests.Session()
    username = "e2e-victim-drf"

    statuses, right = guesses_then_right_password(
        lambda user, password, headers: form_login(
            session, platform.url("/api/auth/login/"), user, password, next_url="/api/v1/", headers=headers
        ),
        username,
        platform.passwords[username],
    )

    assert 302 not in statuses
    assert right.status_code != 302 and not session.cookies.get("sessionid"), (
        f"logged in after {GUESSES} wrong passwords: {statuses}"
    )


def test_the_token_endpoint_locks_out_a_guessed_account(platform: Platform):
    username = "e2e-victim-token"

    def login(user: str, password: str, headers: dict[str, str]) -> requests.Response:
        return requests.post(
            platform.url("/api/v1/auth/token/"),
            data={"username": user, "password": password},
            headers=headers,
            timeout=HTTP_TIMEOUT,
        )

    statuses, right = guesses_then_right_password(login, username, platform.passwords[username])

    assert 200 not in statuses
    assert right.status_code != 200 and "token" not in _json(right), (
        f"a token after {GUESSES} wrong passwords: {statuses}"
    )


def _json(answer: requests.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
