"""Production settings refuse insecure defaults; check --deploy is clean; the API schema validates."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "kq3V-9xPz_2LmN8rTt4YbW6cQe1HfJ0gUa7oSd5iRn_MvXy-Zp2B",
    "ALLOWED_HOSTS": "etl-monitor.example.com",
    "FIELD_ENCRYPTION_KEY": "p8lqoXkq0HbA2n8v9Bv3u5ZyGgVFr0M4f7F0nB3nYxM=",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be set"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must be set"),
        ({"FIELD_ENCRYPTION_KEY": ""}, "FIELD_ENCRYPTION_KEY must be set"),
    ],
)
def test_production_refuses_insecure_defaults(override, message):
    env = {**PRODUCTION_ENV, **override}
    env = {k: v for k, v in env.items() if v != ""}
    result = manage("check", "--deploy", **env)
    assert result.returncode != 0
    assert message in result.stderr
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    server = subprocess.run(  # the web application itself refuses to load
        [sys.executable, "-c", "import etl_monitor.wsgi"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert server.returncode != 0 and message in server.stderr


def test_offline_commands_run_without_any_configuration():
    base = {
        k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY")
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


def test_secrets_are_never_handled_with_a_derived_key_outside_debug(settings):
    from django.core.exceptions import ImproperlyConfigured

    from etl_monitor.crypto import secret_encrypt

    settings.FIELD_KEY_DERIVED_ALLOWED, settings.FIELD_ENCRYPTION_KEY = False, []
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY must be set"):
        secret_encrypt("x")


def test_the_openapi_schema_validates(db):
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in (
        "/api/v1/loaders/{loader_code}/approve/",
        "/api/v1/auth/token/",
        "/api/v1/loaders/{loader_code}/versions/",
    ):
        assert path in schema


def test_api_docs_need_login_and_serve_assets_locally(client, viewer):
    assert client.get("/api/docs/").status_code == 302
    client.force_login(viewer)
    html = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn." not in html and "unpkg" not in html
    assert client.get("/api/schema/").status_code == 200


def test_a_severity_setting_that_names_no_severity_is_reported(settings):
    from django.core.checks import run_checks

    assert [e.id for e in run_checks() if e.id == "etl_monitor.E002"] == []
    settings.SOURCE_UNREACHABLE_SEVERITY = "URGENT"
    settings.ALERTMANAGER_SEVERITY_MAP = {"critical": "CRITICAL", "warning": "WARN"}
    messages = [e.msg for e in run_checks() if e.id == "etl_monitor.E002"]
    assert messages == [
        "SOURCE_UNREACHABLE_SEVERITY='URGENT' is not a severity (one of CRITICAL, HIGH, MEDIUM, LOW).",
        "ALERTMANAGER_SEVERITY_MAP maps 'warning' to 'WARN', which is not a severity (one of CRITICAL, HIGH, "
        "MEDIUM, LOW).",
    ]
