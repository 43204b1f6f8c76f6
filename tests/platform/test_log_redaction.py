"""Credentials never reach a log line: ping keys and secret query values are masked in gunicorn's
access log and in Django's request logs (issue 13, item 11)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from etl_monitor.log_filters import log_redact
from tests.net import free_port
from tests.processes import postgres_test_url

ROOT = Path(__file__).resolve().parents[2]
PING_KEY = "pk9Zq4RtW2vYx7LmNa3b"
JIRA_SECRET = "jira-hook-Secret-4f7d9a"
QUERY_TOKEN = "tok-8c1e5b2a"
QUERY_KEY = "key-77aa31cd"


def test_it_masks_the_ping_key_and_keeps_the_path_shape() -> None:
    line = f'127.0.0.1 - - "GET /ping/{PING_KEY}/SALES-DAILY/fail?rid=3f2c HTTP/1.1" 200 40'
    redacted = log_redact(line)
    assert PING_KEY not in redacted
    assert "/ping/••••••/SALES-DAILY/fail?rid=3f2c" in redacted


def test_it_masks_secret_token_and_key_query_values() -> None:
    line = f"POST /integrations/jira/webhook/?secret={JIRA_SECRET}&x=1&token={QUERY_TOKEN}&key={QUERY_KEY} HTTP/1.1"
    redacted = log_redact(line)
    for value in (JIRA_SECRET, QUERY_TOKEN, QUERY_KEY):
        assert value not in redacted
    assert "/integrations/jira/webhook/?secret=••••••&x=1&token=••••••&key=••••••" in redacted


def test_it_leaves_ordinary_paths_alone() -> None:
    line = "GET /api/v1/loaders/SALES-DAILY/?state=pending&page=2 HTTP/1.1"
    assert log_redact(line) == line


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Everything the configured handlers of Django's request loggers write, as text."""
    stream = io.StringIO()
    seen: list[tuple[logging.StreamHandler, object]] = []
    for name in ("django.request", "django.server"):
        logger: logging.Logger | None = logging.getLogger(name)
        while logger is not None:
            for handler in logger.handlers:
                if type(handler).__module__.startswith("_pytest"):
                    continue  # pytest's own capture, not a handler of the app
                if isinstance(handler, logging.StreamHandler) and all(h is not handler for h, _ in seen):
                    seen.append((handler, handler.setStream(stream)))
            logger = logger.parent if logger.propagate else None
    yield stream
    for handler, previous in seen:
        handler.setStream(previous)  # type: ignore[arg-type]


def test_djangos_request_and_server_logs_mask_ping_keys_and_secrets(logged: io.StringIO, settings) -> None:
    settings.DEBUG = True  # Django's own console handler only writes while DEBUG is on
    logging.getLogger("django.request").warning("Not Found: %s", f"/ping/{PING_KEY}/SALES-DAILY")
    logging.getLogger("django.server").info(
        '"%s" %s %s', f"GET /integrations/jira/webhook/?secret={JIRA_SECRET} HTTP/1.1", 401, 52
    )
    text = logged.getvalue()
    assert "/ping/••••••/SALES-DAILY" in text
    assert "/integrations/jira/webhook/?secret=••••••" in text
    assert PING_KEY not in text
    assert JIRA_SECRET not in text


def http_get(url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("Connection", "close")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def database_url(tmp_path: Path) -> str:
    """The test database for PostgreSQL; on SQLite (in memory in tests) a migrated file of the test's own."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.postgresql":
        return postgres_test_url()
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    env = {**os.environ, "DEBUG": "true", "DATABASE_URL": url, "ETL_MONITOR_VAR_DIR": str(tmp_path / "var")}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return url


@pytest.mark.django_db(transaction=True)
def test_gunicorns_access_log_and_djangos_log_hold_no_ping_key_or_secret(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": database_url(tmp_path),
        "ETL_MONITOR_VAR_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "1",
        "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
        "CELERY_TASK_ALWAYS_EAGER": "true",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    error_log = tmp_path / "stderr.log"
    port = free_port()
    access = ["--access-logfile", str(access_log)]
    with error_log.open("wb") as stderr:
        proc = subprocess.Popen(
            [gunicorn, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", *access],
            cwd=ROOT,
            env=env,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if http_get(f"{base}/healthz") == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            assert http_get(f"{base}/ping/{PING_KEY}/SALES-DAILY") == 404
            assert http_get(f"{base}/ping/{PING_KEY}/SALES-DAILY/fail?rid=abc") == 404
            http_get(f"{base}/integrations/jira/webhook/?secret={JIRA_SECRET}", body=b"{}")
            http_get(f"{base}/healthz?token={QUERY_TOKEN}&key={QUERY_KEY}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    access = access_log.read_text()
    django_log = error_log.read_text()
    assert "/ping/••••••/SALES-DAILY " in access
    assert "/ping/••••••/SALES-DAILY/fail?rid=abc " in access
    assert "/integrations/jira/webhook/?secret=•••••• " in access
    assert "/healthz?token=••••••&key=•••••• " in access
    assert "Not Found: /ping/••••••/SALES-DAILY" in django_log  # Django's request log of the 404
    for secret in (PING_KEY, JIRA_SECRET, QUERY_TOKEN, QUERY_KEY):
        assert secret not in access
        assert secret not in django_log
