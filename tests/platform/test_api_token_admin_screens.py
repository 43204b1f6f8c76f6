"""The API token screens of the admin read at a glance: the list shows each token's state next to
its owner (not past the right edge) and filters by state (active, expired, revoked) rather than
by revocation date; a token's page says its state; revoking a token already revoked says so
instead of counting it as revoked now."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from etl_monitor.models import ApiToken
from etl_monitor.roles import Role
from etl_monitor.tokens import api_token_create, api_token_revoke

TOKENS = "/admin/etl_monitor/apitoken/"


@pytest.fixture
def root(make_user: Callable[..., User]) -> Client:
    client = Client()
    client.force_login(make_user(Role.ADMIN, username="root"))
    return client


@pytest.fixture
def tokens(make_user: Callable[..., User]) -> dict[str, ApiToken]:
    alice = make_user(Role.EDITOR, username="alice")
    active, _ = api_token_create(user=alice, name="active-one")
    expired, _ = api_token_create(user=alice, name="expired-one")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    revoked, _ = api_token_create(user=alice, name="revoked-one")
    revoked = api_token_revoke(user=alice, token=revoked)
    return {"active": active, "expired": expired, "revoked": revoked}


def columns(page: str) -> list[str]:
    return re.findall(r'<th scope="col"\s+class="[^"]*column-(\w+)', page)


def test_the_state_stands_next_to_the_owner(root: Client, tokens) -> None:
    cols = columns(root.get(TOKENS).content.decode())
    assert cols.index("state") == cols.index("user") + 2, cols  # key, user, name, state…


@pytest.mark.parametrize("state", ["active", "expired", "revoked"])
def test_the_list_filters_by_state(root: Client, tokens, state: str) -> None:
    page = root.get(TOKENS, {"state": state}).content.decode()
    shown = {name for name in ("active-one", "expired-one", "revoked-one") if name in page}
    assert shown == {f"{state}-one"}


def test_the_filter_offers_states_not_dates(root: Client, tokens) -> None:
    page = root.get(TOKENS).content.decode()
    assert "?state=expired" in page
    assert "By revoked at" not in page and "Past 7 days" not in page


@pytest.mark.parametrize("state", ["active", "expired", "revoked"])
def test_a_tokens_page_says_its_state(root: Client, tokens, state: str) -> None:
    page = root.get(f"{TOKENS}{tokens[state].pk}/change/").content.decode()
    assert re.search(rf'field-state">.*?<div class="readonly">{state}</div>', page, re.S), page


def test_revoking_an_already_revoked_token_says_so(root: Client, tokens) -> None:
    revoked_at = tokens["revoked"].revoked_at
    answer = root.post(
        TOKENS,
        {"action": "revoke_selected", "_selected_action": [tokens["revoked"].pk, tokens["active"].pk]},
        follow=True,
    )
    text = answer.content.decode()
    assert "1 API token was revoked; it can never be used again." in text
    assert "1 was already revoked" in text
    tokens["revoked"].refresh_from_db()
    assert tokens["revoked"].revoked_at == revoked_at
