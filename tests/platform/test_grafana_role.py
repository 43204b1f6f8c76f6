"""The read-only PostgreSQL role of Grafana's SQL panels (``manage.py grafana_role``).

Each test reads *as the role* (SET ROLE inside a savepoint) and lets PostgreSQL itself answer:
what the dashboards need is readable; secrets, free text that may quote them, token hashes and
any field that field protection hides from Viewers are refused, and nothing can be written.
Roles are created inside the test's transaction, so they vanish with it.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import psycopg.errors
import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from etl_monitor.grafana_role import grafana_role_grants
from etl_monitor.models import FieldProtection
from etl_monitor.roles import Role
from loaders.models import Loader
from signals_app.models import Run

pytestmark = pytest.mark.django_db


def as_role(role: str, statement: str) -> list[tuple[Any, ...]]:
    """Run ``statement`` as ``role``; PostgreSQL's own error is raised (e.g. InsufficientPrivilege)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'SET ROLE "{role}"')
            cursor.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
            cursor.execute("RESET ROLE")
            return rows
    except DatabaseError as exc:
        raise exc.__cause__ from None  # the rolled-back savepoint took the SET ROLE with it


def refused(role: str, statement: str) -> bool:
    try:
        as_role(role, statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


@pytest.fixture
def role(require_postgres: None) -> str:
    return f"grafana_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def granted(role: str, active_loader: Loader) -> str:
    Run.objects.create(
        loader=active_loader,
        status="FAILED",
        started_at=timezone.now(),
        rows_written=42,
        error_text="login failed for user etl password=hunter2",
    )
    call_command("grafana_role", role=role, stdout=io.StringIO())
    return role


def test_the_role_reads_every_allowed_column(granted: str, active_loader: Loader) -> None:
    for grant in grafana_role_grants():
        as_role(granted, f"SELECT {', '.join(grant.columns)} FROM {grant.table} LIMIT 1")
    rows = as_role(
        granted,
        "SELECT l.loader_code, t.slug, r.status, r.rows_written, v.state, v.expected_rows_max "
        "FROM loaders_loader l JOIN loaders_team t ON t.id = l.owner_id "
        "JOIN signals_app_run r ON r.loader_id = l.id JOIN loaders_loaderversion v ON v.loader_id = l.id",
    )
    assert rows == [("SALES-DAILY", "data-platform", "FAILED", 42, "ACTIVE", 1000)]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT connection_password FROM loaders_loaderversion",
        "SELECT connection_host FROM loaders_loaderversion",
        "SELECT * FROM loaders_loaderversion",
        "SELECT error_text FROM signals_app_run",
        "SELECT log_excerpt FROM signals_app_run",
        "SELECT attributes FROM signals_app_signal",
        "SELECT token_hash FROM signals_app_ingesttoken",
        "SELECT token_hash FROM etl_monitor_apitoken",
        "SELECT secret FROM integrations_channel",
        "SELECT name FROM integrations_channel",
        "SELECT token FROM etl_monitor_fieldkeycheck",
        "SELECT password FROM auth_user",
        "SELECT session_data FROM django_session",
        "SELECT params FROM incidents_detectionrule",
    ],
)
def test_the_role_is_refused_secrets_and_what_dashboards_do_not_need(granted: str, statement: str) -> None:
    assert refused(granted, statement)


def test_the_refused_run_error_text_really_holds_the_secret(granted: str) -> None:
    # The refusal above matters: the column is there and holds a password the role must not see.
    assert Run.objects.filter(error_text__contains="hunter2").exists()
    assert refused(granted, "SELECT error_text FROM signals_app_run")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO loaders_team (slug, name, email, created_at) VALUES ('x', 'x', '', now())",
        "UPDATE loaders_loader SET is_paused = true",
        "DELETE FROM signals_app_run",
        "TRUNCATE incidents_incident",
        "CREATE TABLE grafana_scratch (id int)",
    ],
)
def test_the_role_cannot_write(granted: str, statement: str) -> None:
    assert refused(granted, statement)


def test_signals_are_read_through_the_partitioned_parent_only(granted: str) -> None:
    as_role(granted, "SELECT loader_id, signal_key, value_number, captured_at FROM signals_app_signal LIMIT 1")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'signals_app_signal'::regclass LIMIT 1"
        )
        partition = cursor.fetchone()
    assert partition is not None  # the DEFAULT partition at least
    assert refused(granted, f"SELECT signal_key FROM {partition[0]}")


def test_a_field_hidden_from_viewers_is_refused_after_running_again(granted: str) -> None:
    assert as_role(granted, "SELECT name FROM loaders_loader") == [("SALES-DAILY loader",)]
    rule = FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    rule.exempt_groups.set(Group.objects.filter(name=Role.ADMIN))  # Admins see it; Viewers do not
    FieldProtection.objects.create(model_label="loaders.loader", field_name="tags", level="HIDDEN")
    assert as_role(granted, "SELECT name FROM loaders_loader")  # nothing changes until the command runs

    call_command("grafana_role", role=granted, stdout=io.StringIO())

    assert refused(granted, "SELECT name FROM loaders_loader")
    assert refused(granted, "SELECT tag_id FROM loaders_loader_tags")
    assert as_role(granted, "SELECT loader_code FROM loaders_loader") == [("SALES-DAILY",)]


def test_a_masked_field_is_refused_and_a_viewer_exemption_grants_it(granted: str) -> None:
    rule = FieldProtection.objects.create(model_label="loaders.loader", field_name="owner", level="MASKED")
    call_command("grafana_role", role=granted, stdout=io.StringIO())
    assert refused(granted, "SELECT owner_id FROM loaders_loader")

    rule.exempt_groups.set(Group.objects.filter(name=Role.VIEWER))
    call_command("grafana_role", role=granted, stdout=io.StringIO())
    assert as_role(granted, "SELECT count(owner_id) FROM loaders_loader") == [(1,)]


def test_check_prints_what_the_role_reads_and_changes_nothing(granted: str, capsys: pytest.CaptureFixture) -> None:
    call_command("grafana_role", role=granted, check=True)
    out = capsys.readouterr().out
    assert "loaders_loader: id, loader_code, name, is_paused, first_activated_at, owner_id" in out
    assert "connection_password" not in out
    assert "error_text" not in out
    assert "Role" not in out  # --check does not update the role


def test_check_of_a_missing_role_names_it(role: str) -> None:
    with pytest.raises(CommandError, match=f"role: Role {role} does not exist"):
        call_command("grafana_role", role=role, check=True)


def test_password_env_makes_a_read_only_login_role(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_DB_PASSWORD", "s3cret-for-tests")
    call_command("grafana_role", role=role, password_env="GRAFANA_DB_PASSWORD", stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolcanlogin, r.rolconfig, a.rolpassword IS NOT NULL "
            "FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = %s",
            [role],
        )
        assert cursor.fetchone() == (True, ["default_transaction_read_only=on"], True)
    call_command("grafana_role", role=role, stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [role])
        assert cursor.fetchone() == (False,)


def test_an_unset_password_variable_is_refused_by_name(role: str) -> None:
    with pytest.raises(CommandError, match="GRAFANA_NOT_SET is not set"):
        call_command("grafana_role", role=role, password_env="GRAFANA_NOT_SET")


@pytest.mark.parametrize("name", ["Grafana", "drop table; --", "x" * 64, ""])
def test_a_bad_role_name_is_refused_naming_the_field(require_postgres: None, name: str) -> None:
    with pytest.raises(CommandError, match=r"^role: "):
        call_command("grafana_role", role=name)


def test_the_application_role_itself_is_refused(require_postgres: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (current,) = cursor.fetchone()
    with pytest.raises(CommandError, match="role: This is the role the application connects as"):
        call_command("grafana_role", role=current)


def test_on_sqlite_the_command_says_it_needs_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "vendor", "sqlite")  # on SQLite itself this changes nothing
    with pytest.raises(CommandError, match="database: The Grafana role needs PostgreSQL; this database is sqlite"):
        call_command("grafana_role", role="etl_monitor_grafana")


# What the command will grant is decided without PostgreSQL, so these also run on SQLite.


def columns_of(table: str) -> tuple[str, ...]:
    return next((g.columns for g in grafana_role_grants() if g.table == table), ())


def test_the_grants_follow_the_viewer_policy_and_its_exemptions(db: None) -> None:
    assert "name" in columns_of("loaders_loader")
    rule = FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="LOCKED")
    assert "name" in columns_of("loaders_loader")  # LOCKED: Viewers still read it
    rule.level = "HIDDEN"
    rule.save()
    rule.exempt_groups.set(Group.objects.filter(name__in=[Role.ADMIN, Role.OPERATOR]))
    assert "name" not in columns_of("loaders_loader")
    rule.exempt_groups.add(*Group.objects.filter(name=Role.VIEWER))
    assert "name" in columns_of("loaders_loader")


def test_the_grants_never_name_a_secret_or_a_token_table(db: None) -> None:
    tables = {g.table for g in grafana_role_grants()}
    columns = {c for g in grafana_role_grants() for c in g.columns}
    assert not tables & {"signals_app_ingesttoken", "etl_monitor_apitoken", "integrations_channel", "auth_user"}
    assert not columns & {"connection_password", "error_text", "log_excerpt", "token_hash", "secret", "attributes"}
