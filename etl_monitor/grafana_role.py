"""The read-only PostgreSQL role Grafana's SQL panels connect as.

Grafana runs queries we do not write at request time, so what it may read is decided by the
database, not by our code: the role holds column-level SELECT on the few tables the dashboards
need and nothing else. A column is granted only when it is on the allowlist below *and* the
Viewer role may see it today: every secret (encrypted) field and every field that field
protection HIDES or MASKS from Viewers is left out, so Grafana never shows what a Viewer could
not see in the admin. Tables holding only secrets or credentials (tokens, channels, data sources)
are not on the allowlist at all.

Applying is idempotent: it revokes everything the role holds in the schema, then grants the
allowlist as it stands, in one transaction, so a column protected since the last run is gone
after the next one (run it again after changing a protection rule).

The platform app imports no domain app, so the models are looked up by label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.apps import apps
from django.db import connection, models, transaction
from psycopg import sql

from etl_monitor.crypto import EncryptedTextField
from etl_monitor.errors import InvalidInput
from etl_monitor.protection import SECRET_NAME_RE, policy_for_role
from etl_monitor.roles import Role

ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# What the dashboards need, by model and *field* name (a foreign key by its field name, a
# many-to-many by its field name for its link table). Deliberately left out:
# - runs' error_text and log_excerpt: free text from the job, which may quote credentials;
# - signals' attributes and idempotency_key: free-form, and nothing a panel groups by;
# - loader versions' connection_* fields: where the data lives is not a dashboard's business;
# - detection rules' params, message and last_error: configuration and error text.
GRAFANA_ALLOWLIST: dict[str, tuple[str, ...]] = {
    "loaders.team": ("id", "slug", "name"),
    "loaders.tag": ("id", "name"),
    "loaders.loader": ("id", "loader_code", "name", "owner", "tags", "is_paused", "first_activated_at"),
    "loaders.loaderversion": (
        "id",
        "loader",
        "number",
        "state",
        "schedule_cron",
        "schedule_timezone",
        "grace_minutes",
        "max_duration_minutes",
        "expected_rows_min",
        "expected_rows_max",
        "freshness_sla_minutes",
        "default_severity",
        "decided_at",
        "superseded_at",
    ),
    "signals_app.run": (
        "id",
        "run_id",
        "loader",
        "loader_version",
        "status",
        "started_at",
        "finished_at",
        "duration_seconds",
        "rows_read",
        "rows_written",
        "rows_rejected",
        "exit_status",
        "correlation_id",
        "source",
    ),
    "signals_app.signal": (
        "id",
        "loader",
        "run",
        "signal_key",
        "signal_value",
        "value_number",
        "validation_status",
        "metric_type",
        "metric_source",
        "captured_at",
        "received_at",
        "correlation_id",
    ),
    "incidents.incident": (
        "id",
        "loader",
        "rule",
        "severity",
        "category",
        "status",
        "title",
        "first_seen",
        "last_seen",
        "occurrences",
        "acknowledged_at",
        "resolved_at",
        "external_key",
    ),
    "incidents.detectionrule": ("id", "name", "kind", "rule_type", "severity", "enabled"),
}


@dataclass(frozen=True)
class Grant:
    table: str
    columns: tuple[str, ...]


def _excluded(label: str, model: type[models.Model]) -> set[str]:
    """Fields of ``model`` a Viewer may not read: protected (HIDDEN or MASKED) or secret."""
    policy = policy_for_role(Role.VIEWER, label)
    excluded = policy.hidden | policy.masked | set(policy.secrets)
    for f in model._meta.get_fields():
        if isinstance(f, EncryptedTextField) or SECRET_NAME_RE.search(f.name):
            excluded.add(f.name)
    return excluded


def grafana_role_grants() -> list[Grant]:
    """The tables and columns the role may read today (allowlist minus what Viewers may not see)."""
    grants: list[Grant] = []
    for label, names in GRAFANA_ALLOWLIST.items():
        model = apps.get_model(label)
        excluded = _excluded(label, model)
        columns: list[str] = []
        for name in names:
            if name in excluded:
                continue
            field = model._meta.get_field(name)
            if isinstance(field, models.ManyToManyField):
                through = field.remote_field.through._meta
                link = (
                    through.get_field(field.m2m_column_name()).column,
                    through.get_field(field.m2m_reverse_name()).column,
                )
                grants.append(Grant(through.db_table, ("id", *link)))
            else:
                columns.append(field.column)
        grants.append(Grant(model._meta.db_table, tuple(columns)))
    return grants


def _require_postgres() -> None:
    if connection.vendor != "postgresql":
        raise InvalidInput({"database": [f"The Grafana role needs PostgreSQL; this database is {connection.vendor}."]})


def scram_verifier(password: str, role: str) -> str:
    """``password`` as the SCRAM-SHA-256 verifier PostgreSQL stores in ``pg_authid``
    (``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``), computed here by libpq
    (``PQencryptPasswordConn``: random salt, the server's iteration count, SASLprep as the server
    does it). ``CREATE/ALTER ROLE … PASSWORD`` given a verifier stores it as it is, so the
    plaintext never travels to the server and cannot land in its statement log."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    return pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def grafana_role_apply(*, role: str, password: str | None = None) -> list[Grant]:
    """Create or update ``role`` (LOGIN with ``password``, else NOLOGIN) and leave it holding
    exactly today's grants: CONNECT, USAGE on the schema, SELECT on the allowed columns."""
    _require_postgres()
    if not ROLE_NAME_RE.match(role):
        raise InvalidInput(
            {"role": ["Use lower-case letters, digits and underscores (at most 63), e.g. etl_monitor_grafana."]}
        )
    if password is not None and not password:
        raise InvalidInput({"password": ["The password variable is set but empty."]})
    grants = grafana_role_grants()
    name = sql.Identifier(role)
    login = (
        sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(scram_verifier(password, role)))
        if password
        else sql.SQL("NOLOGIN")
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_database()")
        current_user, database = cursor.fetchone()
        if role == current_user:
            raise InvalidInput({"role": ["This is the role the application connects as; choose another name."]})
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row and row[0]:
            raise InvalidInput({"role": [f"Role {role} is a superuser; a read-only role cannot be one."]})
        verb = "ALTER" if row else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE {} WITH {}").format(name, login).as_string(cursor.connection))
        # A second line of defence: even a grant added by hand later cannot be used to write.
        cursor.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(name).as_string(cursor.connection)
        )
        # Revoking on the tables revokes their column privileges as well (PostgreSQL's REVOKE).
        statements = [
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(name),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(name),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name),
        ]
        for grant in grants:
            if grant.columns:
                statements.append(
                    sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, grant.columns)), sql.Identifier(grant.table), name
                    )
                )
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))
    return grants


def grafana_role_readable(*, role: str) -> dict[str, list[str]]:
    """What ``role`` can SELECT in the public schema now, table → columns, as the database says."""
    _require_postgres()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            raise InvalidInput({"role": [f"Role {role} does not exist; run the command without --check first."]})
        cursor.execute(
            """
            SELECT c.relname, a.attname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p', 'v', 'm')
              AND has_column_privilege(%s, c.oid, a.attnum, 'SELECT')
            ORDER BY c.relname, a.attnum
            """,
            [role],
        )
        readable: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            readable.setdefault(table, []).append(column)
    return readable
