"""People's API tokens are stored hashed, expire and can be revoked; the public contract
(POST /api/v1/auth/token/ → a token, ``Authorization: Token <key>``) holds (issue 13, item 14)."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from etl_monitor.models import ApiToken
from etl_monitor.roles import Role
from etl_monitor.tokens import api_token_create

PASSWORD = "pw-for-tests-123"  # tests/conftest.py make_user

pytestmark = pytest.mark.usefixtures("auth_token_unthrottled")


def login(username: str, **extra: str) -> dict:
    answer = APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": PASSWORD, **extra}, format="json"
    )
    assert answer.status_code == 200, answer.content
    return answer.json()


def as_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_token_endpoint_stores_only_a_digest_of_the_key(alice: User) -> None:
    issued = login("alice")
    key = issued["token"]
    token = ApiToken.objects.get(user=alice)
    assert token.token_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix) and len(token.prefix) < len(key) // 3
    stored = [str(value) for value in ApiToken.objects.values_list().get()]
    assert not any(key in value for value in stored)


def test_the_token_header_keeps_working(alice: User) -> None:
    key = login("alice")["token"]
    assert as_token(key).get("/api/v1/loaders/").status_code == 200
    assert as_token(key).get("/api/v1/whoami/").json()["name"] == "alice"


def test_a_token_expires_after_the_configured_days(alice: User, settings) -> None:
    settings.API_TOKEN_TTL_DAYS = 7
    issued = login("alice")
    expires = dt.datetime.fromisoformat(issued["expires_at"])
    assert abs(expires - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)


def test_an_expired_token_is_refused_with_a_clear_message(alice: User) -> None:
    key = login("alice")["token"]
    ApiToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    answer = as_token(key).get("/api/v1/loaders/")
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"] and "POST /api/v1/auth/token/" in answer.json()["detail"]


def test_an_unknown_token_is_refused(alice: User) -> None:
    answer = as_token("etlu_not-a-token").get("/api/v1/loaders/")
    assert answer.status_code == 401
    assert answer.json()["detail"] == "Invalid token."


def test_a_token_of_a_deactivated_user_is_refused(alice: User) -> None:
    key = login("alice")["token"]
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert as_token(key).get("/api/v1/loaders/").status_code == 401


def test_a_user_lists_their_tokens_without_the_key(alice: User, bob: User) -> None:
    key = login("alice", name="report script")["token"]
    api_token_create(user=bob)
    listed = as_token(key).get("/api/v1/auth/tokens/").json()["results"]
    assert [(t["user"], t["name"], t["is_active"]) for t in listed] == [("alice", "report script", True)]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert key not in str(listed)


def test_a_user_revokes_their_own_token(alice: User) -> None:
    key = login("alice")["token"]
    token = ApiToken.objects.get()
    assert as_token(key).delete(f"/api/v1/auth/tokens/{token.pk}/").status_code == 204
    answer = as_token(key).get("/api/v1/loaders/")
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]
    token.refresh_from_db()
    assert token.revoked_by == alice


def test_a_user_cannot_revoke_someone_elses_token(alice: User, bob: User) -> None:
    bobs, _ = api_token_create(user=bob)
    key = login("alice")["token"]
    assert as_token(key).delete(f"/api/v1/auth/tokens/{bobs.pk}/").status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_an_admin_revokes_anyones_token(alice: User, make_user: Callable[..., User]) -> None:
    make_user(Role.ADMIN, username="root")
    alices, alices_key = api_token_create(user=alice)
    admin_key = login("root")["token"]
    assert as_token(admin_key).delete(f"/api/v1/auth/tokens/{alices.pk}/").status_code == 204
    assert as_token(alices_key).get("/api/v1/loaders/").status_code == 401


def test_a_bad_token_id_is_404(alice: User) -> None:
    key = login("alice")["token"]
    assert as_token(key).delete("/api/v1/auth/tokens/nope/").status_code == 404


def test_a_too_long_name_is_a_400_naming_the_field(alice: User) -> None:
    answer = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD, "name": "x" * 101}, format="json"
    )
    assert answer.status_code == 400
    assert "name" in answer.json()
    assert not ApiToken.objects.exists()


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_shows_tokens_without_the_key_and_admins_revoke_them(
    alice: User, make_user: Callable[..., User]
) -> None:
    token, key = api_token_create(user=alice, name="nightly")
    client = Client()
    client.force_login(make_user(Role.ADMIN, username="root"))
    page = client.get("/admin/etl_monitor/apitoken/").content.decode()
    assert token.prefix in page and "nightly" in page
    assert key not in page and token.token_hash not in page
    detail = client.get(f"/admin/etl_monitor/apitoken/{token.pk}/change/").content.decode()
    assert key not in detail and token.token_hash not in detail
    client.post("/admin/etl_monitor/apitoken/", {"action": "revoke_selected", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_in_the_admin_a_user_sees_and_revokes_only_their_own_tokens(alice: User, bob: User) -> None:
    mine, _ = api_token_create(user=bob, name="bobs")
    theirs, _ = api_token_create(user=alice, name="alices")
    client = Client()
    client.force_login(bob)
    page = client.get("/admin/etl_monitor/apitoken/").content.decode()
    assert "bobs" in page and "alices" not in page
    assert client.get(f"/admin/etl_monitor/apitoken/{theirs.pk}/change/").status_code in (302, 403, 404)
    client.post("/admin/etl_monitor/apitoken/", {"action": "revoke_selected", "_selected_action": [mine.pk, theirs.pk]})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None


# --- the data migration --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # SQLite's schema editor refuses to run inside a transaction
def test_plain_text_tokens_are_hashed_by_the_migration_and_their_table_dropped(alice: User) -> None:
    from django.apps import apps

    plain = "0123456789abcdef0123456789abcdef01234567"  # a DRF authtoken key
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp NOT NULL, "
            "user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)", [plain, timezone.now(), alice.pk]
        )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', %s)",
            [timezone.now()],
        )
    migration = importlib.import_module("etl_monitor.migrations.0005_api_tokens")
    with connection.schema_editor() as editor:
        migration.hash_plain_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
    migrated = ApiToken.objects.get(user=alice)
    assert migrated.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert as_token(plain).get("/api/v1/loaders/").status_code == 200  # scripts keep working…
    assert migrated.expires_at > timezone.now() + dt.timedelta(days=80)  # …until the token expires
