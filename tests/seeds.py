"""The rows the data migrations seed, written again after a transactional test empties the tables.

A test that commits (``transactional_db``, ``django_db(transaction=True)``) cannot be rolled back, so
at teardown Django flushes every table and then sends ``post_migrate``: content types, permissions and
the role groups (``etl_monitor.apps``) come back that way, but the data migrations' rows do not — the
built-in detection rules, the roadmap's routing, the Jira channel, the built-in protection rule, the
field key check, the STATS loaders and their captures. Every test after the first transactional one
then ran on a platform that no real database can be in (and failed on PostgreSQL, where CI runs them
in file order). ``migration_seeds_restore`` runs those migrations' own functions again on that signal,
so the seed data lives in the migrations only.

Every ``RunPython`` of the project's apps is listed here as a seed or as something else;
tests/test_migration_seeds.py fails when a new one is neither, so a new seed cannot be forgotten.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunPython

PROJECT_APPS = ("etl_monitor", "loaders", "signals_app", "incidents", "integrations")

# Data migrations whose rows the platform relies on, in the order migrate applies them.
MIGRATION_SEEDS: tuple[tuple[str, str], ...] = (
    ("etl_monitor", "0003_builtin_secret_protection"),
    ("etl_monitor", "0004_field_key_check"),
    ("incidents", "0002_default_rules"),
    ("incidents", "0005_freshness_rule_readable_messages"),
    ("incidents", "0009_seed_anomaly_rules"),
    ("integrations", "0002_seed_roadmap_routing"),
    ("integrations", "0004_seed_jira"),
    ("integrations", "0009_seed_statistics_capture"),
)

# RunPython operations that are not seeds, and why they are not run again.
NOT_SEEDS: dict[tuple[str, str], str] = {
    ("etl_monitor", "0001_role_groups"): "the role groups are re-synced on post_migrate by etl_monitor.apps itself",
    ("etl_monitor", "0005_api_tokens"): "hashes tokens that existed before it: a flushed table has none",
    ("signals_app", "0002_partition_signals"): "a schema change; a flush keeps the partitions",
}


def migration_run_python(app_label: str, name: str) -> list[RunPython]:
    """The ``RunPython`` operations of one migration, as migrate runs them."""
    module = importlib.import_module(f"{app_label}.migrations.{name}")
    return [op for op in module.Migration.operations if isinstance(op, RunPython)]


_state_apps: Any = None


def _current_state_apps() -> Any:
    """The migrations' view of today's schema (built once): the seed functions run on these
    historical models as they did under migrate — no model ``save()`` overrides, no signals (so no
    second history row beside the one a seed writes itself)."""
    global _state_apps
    if _state_apps is None:
        loader = MigrationLoader(connections[DEFAULT_DB_ALIAS], ignore_no_migrations=True)
        _state_apps = loader.project_state().apps
    return _state_apps


class _SchemaEditorStandIn:
    """What the seed functions read from their ``schema_editor`` argument: the connection."""

    def __init__(self, using: str) -> None:
        self.connection = connections[using]


def migration_seeds_apply(using: str = DEFAULT_DB_ALIAS) -> None:
    """Run every seed migration's functions again (each is idempotent: get_or_create or 'if missing')."""
    apps = _current_state_apps()
    editor = _SchemaEditorStandIn(using)
    for app_label, name in MIGRATION_SEEDS:
        for operation in migration_run_python(app_label, name):
            operation.code(apps, editor)


def migration_seeds_restore(*, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver: after a flush (sent without a ``plan``) seed again; after migrate
    (with a ``plan``) the migrations have just done it."""
    if "plan" in kwargs:
        return
    migration_seeds_apply(using)
