"""Every login surface locks out after LOGIN_FAILURE_LIMIT wrong passwords, keyed on the account
and on the real client address; X-Forwarded-For counts only behind TRUSTED_PROXY_COUNT proxies
(issue 13, item 4)."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from etl_monitor.lockout import client_ip
from etl_monitor.roles import Role
from tests.conftest import at_once

PASSWORD = "pw-for-tests-123"  # tests/conftest.py make_user
LIMIT = 5
TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def _limits(settings, auth_token_unthrottled) -> None:
    # DRF's per-address rate limit of the token endpoint is out of the way: the lockout is under test.
    settings.AXES_FAILURE_LIMIT = LIMIT


def token_post(client: APIClient, username: str, password: str, **extra: str):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def test_thirty_guesses_from_thirty_forged_addresses_are_locked_out(alice: User) -> None:
    client = APIClient()
    answers = [token_post(client, "alice", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") for n in range(1, 31)]
    assert [a.status_code for a in answers[: LIMIT - 1]] == [400] * (LIMIT - 1)
    locked = answers[LIMIT - 1 :]
    assert {a.status_code for a in locked} == {429}
    body = locked[-1].json()
    assert body["code"] == "locked_out"
    assert "Too many failed logins" in body["detail"] and "Try again after" in body["detail"]
    assert int(locked[-1]["Retry-After"]) > 0


def test_the_right_password_is_refused_while_locked_out(alice: User) -> None:
    client = APIClient()
    for n in range(LIMIT):
        token_post(client, "alice", f"guess-{n}")
    answer = token_post(client, "alice", PASSWORD)
    assert answer.status_code == 429
    assert "token" not in answer.json()


def test_the_account_stays_locked_from_another_address(alice: User) -> None:
    client = APIClient()
    for n in range(LIMIT):
        token_post(client, "alice", f"guess-{n}", REMOTE_ADDR=f"192.0.2.{n + 1}")
    assert token_post(client, "alice", PASSWORD, REMOTE_ADDR="192.0.2.200").status_code == 429


def test_another_account_from_the_locked_address_is_refused_too(alice: User, bob: User) -> None:
    client = APIClient()
    for n in range(LIMIT):
        token_post(client, "alice", f"guess-{n}", REMOTE_ADDR="192.0.2.7")
    assert token_post(client, "bob", PASSWORD, REMOTE_ADDR="192.0.2.7").status_code == 429
    # …while bob from his own address is not affected.
    assert token_post(client, "bob", PASSWORD, REMOTE_ADDR="192.0.2.8").status_code == 200


def test_the_admin_login_locks_out_and_says_when_to_retry(make_user: Callable[..., User]) -> None:
    make_user(Role.ADMIN, username="root")
    client = Client()
    answers = [client.post("/admin/login/", {"username": "root", "password": f"guess-{n}"}) for n in range(LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [200] * (LIMIT - 1)  # the form again, with its error
    assert answers[-1].status_code == 429
    page = answers[-1].content.decode()
    assert "Too many failed logins" in page and "Try again after" in page
    again = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert again.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_browsable_api_login_locks_out(alice: User) -> None:
    client = Client()
    for n in range(LIMIT):
        client.post("/api/auth/login/", {"username": "alice", "password": f"guess-{n}"})
    answer = client.post("/api/auth/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 429
    assert "Try again after" in answer.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_successful_login_below_the_limit_works(alice: User) -> None:
    client = APIClient()
    for n in range(LIMIT - 1):
        token_post(client, "alice", f"guess-{n}")
    assert token_post(client, "alice", PASSWORD).status_code == 200


def test_the_lockout_ends_after_the_cool_off(alice: User, settings) -> None:
    import datetime as dt

    from axes.models import AccessAttempt

    client = APIClient()
    for n in range(LIMIT):
        token_post(client, "alice", f"guess-{n}")
    assert token_post(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - settings.AXES_COOLOFF_TIME)
    assert token_post(client, "alice", PASSWORD).status_code == 200


# --- the client's address ---------------------------------------------------------------------


def test_without_trusted_proxies_the_address_is_remote_addr(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 0
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_ip(request) == "192.0.2.1"


def test_behind_trusted_proxies_the_address_is_the_nth_from_the_right(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 2
    xff = "6.6.6.6, 203.0.113.9, 10.0.0.2"  # forged, the client (seen by the outer proxy), the outer proxy
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR=xff)
    assert client_ip(request) == "203.0.113.9"
    short = RequestFactory().get("/", REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_ip(short) == "203.0.113.9"  # fewer entries than proxies: the leftmost, as DRF does
    junk = RequestFactory().get("/", REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR="not-an-address, 10.0.0.2")
    assert client_ip(junk) == "10.0.0.3"  # never a value the database would refuse


def test_behind_one_proxy_forged_addresses_do_not_escape_the_lockout(alice: User, settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    client = APIClient()
    for n in range(LIMIT):  # the proxy appends the real client 203.0.113.9 to whatever was sent
        token_post(client, "alice", "guess", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 203.0.113.9")
    answer = token_post(client, "bob", PASSWORD, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="2.2.2.2, 203.0.113.9")
    assert answer.status_code == 429


def test_drf_throttles_do_not_trust_x_forwarded_for_beyond_the_trusted_proxies(settings) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert ScopedRateThrottle().get_ident(request) == "192.0.2.1"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert ScopedRateThrottle().get_ident(request) == "203.0.113.9"


# --- PostgreSQL: concurrent guesses are all counted ------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_are_all_counted_on_postgresql(require_postgres, alice: User) -> None:
    from axes.models import AccessAttempt

    statuses = at_once(lambda: token_post(APIClient(), "alice", "guess").status_code, 12)
    assert set(statuses) <= {400, 429}
    assert sum(a.failures_since_start for a in AccessAttempt.objects.all()) == 12
    assert token_post(APIClient(), "alice", PASSWORD).status_code == 429


# --- the first admin's password ----------------------------------------------------------------


@pytest.mark.parametrize("weak", ["admin", "12345678901", "password123", "short1!"])
def test_a_weak_first_admin_password_is_refused(db, monkeypatch, weak: str) -> None:
    monkeypatch.setenv("ETL_MONITOR_ADMIN_PASSWORD", weak)
    with pytest.raises(CommandError) as refused:
        call_command("ensure_admin", stdout=StringIO())
    assert "ETL_MONITOR_ADMIN_PASSWORD" in str(refused.value)
    assert not User.objects.filter(is_superuser=True).exists()


def test_the_refusal_says_what_is_wrong(db, monkeypatch) -> None:
    monkeypatch.setenv("ETL_MONITOR_ADMIN_PASSWORD", "admin")
    with pytest.raises(CommandError, match="too short"):
        call_command("ensure_admin", stdout=StringIO())
