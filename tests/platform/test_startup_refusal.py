"""Web, worker and beat refuse to start on insecure production settings or field keys that cannot
read the database — as processes, with a non-zero exit status and the reason on stderr.

The processes get their own migrated SQLite database (written with ``KEY_A``) and var directory,
so they touch neither the test database nor the broker other tests use.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from etl_monitor.checks import field_key_verify, settings_refuse_insecure
from etl_monitor.crypto import KEY_CHECK_PLAINTEXT
from etl_monitor.models import FieldKeyCheck
from tests.platform.test_celery_worker import CELERY
from tests.processes import celery_worker

ROOT = Path(__file__).resolve().parents[2]
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
SECURE = {
    "DEBUG": "false",
    "SECRET_KEY": "kq3V-9xPz_2LmN8rTt4YbW6cQe1HfJ0gUa7oSd5iRn_MvXy-Zp2B",
    "ALLOWED_HOSTS": "etl-monitor.example.com",
}
WRONG_KEY = "FIELD_ENCRYPTION_KEY does not decrypt this database's secrets"
# The environment variables of the refusals under test; everything else (PATH…) is inherited.
OURS = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated database whose key check was written with KEY_A, and a var directory of its own."""
    var = tmp_path_factory.mktemp("site")
    env = {"DATABASE_URL": f"sqlite:///{var / 'site.sqlite3'}", "ETL_MONITOR_VAR_DIR": str(var)}
    migrated = run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], **env, **SECURE, FIELD_ENCRYPTION_KEY=KEY_A
    )
    assert migrated.returncode == 0, migrated.stderr
    return env


def run(command: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    return subprocess.run(command, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=timeout)


def start(process: str, site: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    """Start web, worker or beat; one that is refused exits within seconds (a timeout fails the test)."""
    var = site["ETL_MONITOR_VAR_DIR"]
    command = {
        "web": [sys.executable, "-c", "import etl_monitor.wsgi"],
        "worker": celery_worker(),
        "beat": [CELERY, "--app", "etl_monitor", "beat", "--schedule", f"{var}/beat-schedule"],
    }[process]
    return run(command, timeout=60, **site, **env)


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_worker_and_beat_refuse_development_defaults_with_debug_off(site, process):
    result = start(process, site, DEBUG="false")

    assert result.returncode != 0, result.stderr[-2000:]
    assert "Refusing to start" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr
    assert "FIELD_ENCRYPTION_KEY must be set" in result.stderr


@pytest.mark.parametrize("process", ["web", "worker", "beat"])
def test_web_worker_and_beat_refuse_a_key_that_does_not_decrypt_the_database(site, process):
    result = start(process, site, **SECURE, FIELD_ENCRYPTION_KEY=KEY_B)

    assert result.returncode != 0, result.stderr[-2000:]
    assert WRONG_KEY in result.stderr
    assert "put the new key first and keep the old key(s) listed after it" in result.stderr
    assert KEY_B not in result.stderr and KEY_A not in result.stderr


def test_the_web_starts_with_the_database_key_or_with_it_listed_after_a_new_one(site):
    assert start("web", site, **SECURE, FIELD_ENCRYPTION_KEY=KEY_A).returncode == 0
    rotating = start("web", site, **SECURE, FIELD_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}")
    assert rotating.returncode == 0, rotating.stderr[-2000:]


@pytest.mark.parametrize("process", ["web", "worker"])
def test_a_key_that_is_not_a_fernet_key_is_refused_at_start(site, process):
    result = start(process, site, **SECURE, FIELD_ENCRYPTION_KEY="not-a-fernet-key")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY: the key is not a Fernet key" in result.stderr
    assert "not-a-fernet-key" not in result.stderr


def test_manage_py_check_refuses_a_malformed_key_even_in_debug():
    result = run([sys.executable, "manage.py", "check"], DEBUG="true", FIELD_ENCRYPTION_KEY=f"{KEY_A},short")

    assert result.returncode != 0
    assert "etl_monitor.E003" in result.stderr
    assert "FIELD_ENCRYPTION_KEY: key 2 of 2 is not a Fernet key" in result.stderr
    assert "short" not in result.stderr.replace("Fernet key", "")


def test_check_database_reports_a_key_that_does_not_decrypt_the_database(site):
    result = run(
        [sys.executable, "manage.py", "check", "--database", "default"], **site, **SECURE, FIELD_ENCRYPTION_KEY=KEY_B
    )

    assert result.returncode != 0
    assert "etl_monitor.E004" in result.stderr and WRONG_KEY in result.stderr


# --- in process: the key check itself -------------------------------------------------------------------


def test_a_malformed_key_is_refused_in_process_too(settings):
    settings.FIELD_ENCRYPTION_KEY = ["x" * 44]
    with pytest.raises(ImproperlyConfigured, match="the key is not a Fernet key"):
        settings_refuse_insecure()
    assert [e.id for e in run_checks() if e.id == "etl_monitor.E003"] == ["etl_monitor.E003"]


def test_the_first_start_writes_a_missing_key_check_and_later_starts_verify_it(db, settings):
    FieldKeyCheck.objects.all().delete()
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]

    field_key_verify()
    assert [row.token for row in FieldKeyCheck.objects.all()] == [KEY_CHECK_PLAINTEXT]
    field_key_verify()  # the same key again: fine
    assert FieldKeyCheck.objects.count() == 1

    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    with pytest.raises(ImproperlyConfigured, match=WRONG_KEY):
        field_key_verify()

    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]  # rotation in progress
    field_key_verify()


def test_migrating_without_a_usable_key_leaves_the_key_check_to_the_first_start(db, settings):
    migration = importlib.import_module("etl_monitor.migrations.0004_field_key_check")
    FieldKeyCheck.objects.all().delete()
    settings.FIELD_ENCRYPTION_KEY, settings.FIELD_KEY_DERIVED_ALLOWED = [], False

    migration.write(apps, SimpleNamespace(connection=connection))

    assert FieldKeyCheck.objects.count() == 0


# --- rotation -------------------------------------------------------------------------------------------


def test_rotation_re_encrypts_the_key_check_so_the_old_key_can_go(db, settings):
    from django.core.management import call_command

    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    FieldKeyCheck.objects.all().delete()
    field_key_verify()  # a site set up with KEY_A
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]

    call_command("rotate_field_keys", stdout=StringIO())

    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    field_key_verify()


def test_rotation_leaves_values_no_listed_key_decrypts_as_they_are_and_fails(db, settings):
    from django.core.management import CommandError, call_command

    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    FieldKeyCheck.objects.all().delete()
    lost = FieldKeyCheck.objects.create(token=KEY_CHECK_PLAINTEXT)
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]  # KEY_A forgotten

    with pytest.raises(
        CommandError, match=f"1 stored value\\(s\\) decrypt with none of the listed keys.*FieldKeyCheck {lost.pk} token"
    ):
        call_command("rotate_field_keys", stdout=StringIO())

    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]  # still readable with its own key: nothing was lost
    assert FieldKeyCheck.objects.get(pk=lost.pk).token == KEY_CHECK_PLAINTEXT
