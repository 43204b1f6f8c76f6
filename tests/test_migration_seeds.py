"""The rows the data migrations seed are there for every test, also after a test that commits.

A transactional test flushes every table at teardown; tests/seeds.py writes the seeds again when
Django says so (post_migrate). Without it, the tests after the first transactional one ran without
built-in detection rules, routing or key check, and failed in CI's file order on PostgreSQL.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunPython

from etl_monitor.crypto import KEY_CHECK_PLAINTEXT
from etl_monitor.models import FieldKeyCheck, FieldProtection
from etl_monitor.roles import Role
from incidents.models import DetectionRule
from integrations.models import Capture, Channel, JiraSettings, NotificationRule
from loaders.models import Loader
from tests.seeds import MIGRATION_SEEDS, NOT_SEEDS, PROJECT_APPS


def _migration(app_label: str, name: str) -> object:
    return importlib.import_module(f"{app_label}.migrations.{name}")


def seeds_assert_present() -> None:
    """Every row the seed migrations write, named from the migrations themselves."""
    rules = _migration("incidents", "0002_default_rules").RULES
    assert set(DetectionRule.objects.values_list("name", flat=True)) >= {r["name"] for r in rules}
    freshness = _migration("incidents", "0005_freshness_rule_readable_messages").FRESHNESS
    assert DetectionRule.objects.filter(name=freshness["name"], kind="freshness", enabled=True).exists()

    routing = _migration("integrations", "0002_seed_roadmap_routing").ROADMAP
    defaults = NotificationRule.objects.filter(team=None, tag=None)
    assert sorted(defaults.values_list("severity", flat=True)) == sorted(routing)
    assert set(Channel.objects.values_list("name", flat=True)) >= {"email", "slack", "jira"}
    assert JiraSettings.objects.filter(pk=1).exists()

    for label, field, _note in _migration("etl_monitor", "0003_builtin_secret_protection").BUILTIN:
        assert FieldProtection.objects.filter(model_label=label, field_name=field, is_builtin=True).exists()
    assert [check.token for check in FieldKeyCheck.objects.all()] == [KEY_CHECK_PLAINTEXT]

    stats = _migration("integrations", "0009_seed_statistics_capture")
    for code, *_rest in stats.LOADERS:
        loader = Loader.objects.get(loader_code=code)
        assert loader.versions.filter(state="ACTIVE").count() == 1
        assert loader.history.count() == 1
    captures = Capture.objects.filter(system=True).values_list("name", flat=True)
    assert set(captures) == {c["name"] for c in stats.CAPTURES}

    for role in Role.ALL:
        assert Group.objects.get(name=role).permissions.exists()


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def test_every_data_migration_of_the_project_is_a_seed_or_says_why_not() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    with_code = {
        key
        for key, migration in loader.disk_migrations.items()
        if key[0] in PROJECT_APPS and any(isinstance(op, RunPython) for op in migration.operations)
    }
    assert with_code == set(MIGRATION_SEEDS) | set(NOT_SEEDS)
    assert not set(MIGRATION_SEEDS) & set(NOT_SEEDS)


def test_the_migrations_seed_every_row_a_test_starts_with(db) -> None:
    seeds_assert_present()


@pytest.mark.django_db(transaction=True)
def test_a_test_that_commits_changes_seeded_rows() -> None:
    # Runs before the next test of this file (pytest-django keeps file order among transactional
    # tests): its teardown flush is what the test below must not notice.
    DetectionRule.objects.update(enabled=False)
    Channel.objects.filter(name="jira").delete()
    FieldKeyCheck.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_a_test_after_a_test_that_committed_finds_the_seeded_rows() -> None:
    seeds_assert_present()
    assert DetectionRule.objects.filter(name="Run failed", enabled=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_flush_brings_back_the_same_rows_the_migrations_wrote() -> None:
    seeds_assert_present()
    before = _row_counts()

    call_command("flush", interactive=False, verbosity=0)

    seeds_assert_present()
    assert _row_counts() == before
