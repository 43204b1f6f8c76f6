"""Backup → restore round trip on PostgreSQL, as docs/operations describes it: a database populated
through the running app (loaders with several approved versions and their history, an incident
with its timeline, channels and a loader with encrypted secrets, signals) is dumped with
``pg_dump --format=custom``, restored with ``pg_restore`` into an empty database, and the app
started on the restored database with the same FIELD_ENCRYPTION_KEY answers the same over HTTP and
decrypts the secrets; with another key it refuses to start and says why.

pg_dump and pg_restore are Debian's postgresql-client, the server's major version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet

from tests.e2e import conftest as e2e
from tests.e2e.harness import HTTP_TIMEOUT, MARKER, Platform, platform_for, redis_server_available, wait_until
from tests.net import free_port
from tests.processes import GUNICORN, ROOT, process_start, process_stop

pytestmark = pytest.mark.services

FIELD_KEY_WRONG = "FIELD_ENCRYPTION_KEY does not decrypt this database's secrets"
# Read on the restored database by the app's own ORM (a manage.py shell): the secrets as decrypted.
SECRETS_SCRIPT = """
import json
from integrations.models import Channel
from loaders.models import LoaderVersion
print(json.dumps({
    "channels": {c.name: c.secret for c in Channel.objects.exclude(secret="").order_by("name")},
    "loaders": {f"{v.loader.loader_code} v{v.number}": v.connection_password
                for v in LoaderVersion.objects.exclude(connection_password="").select_related("loader")},
}))
"""
LOADERS = ("BACKUP-SALES", "BACKUP-HR")


@pytest.fixture(scope="module")
def populated() -> Iterator[Platform]:
    """The platform (web, worker, beat on PostgreSQL) with a database populated through its API."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        e2e._service_unavailable("PostgreSQL (DATABASE_URL) for the backup/restore test")
    if not redis_server_available() or not shutil.which("pg_dump") or not shutil.which("pg_restore"):
        e2e._service_unavailable("redis-server, pg_dump and pg_restore (postgresql-client) for the backup/restore test")
    workdir = Path(tempfile.mkdtemp(prefix="etl-monitor-backup-"))
    platform = platform_for(workdir, database_url, name_prefix="etl_scale_backup")
    with e2e.platform_running(platform, "backup/restore platform"):
        _populate(platform)
        yield platform


def _populate(platform: Platform) -> None:
    for code in LOADERS:
        platform.loader_create(code, description="v1")
        for number in (2, 3):  # two more approved versions: v1 and v2 superseded, v3 active
            body = {"description": f"v{number}", "connection_password": f"{MARKER}-{code}-v{number}"}
            edited = platform.patch("Editor", f"/api/v1/loaders/{code}/", body)
            assert edited.status_code == 200, edited.text
            assert platform.post("Editor", f"/api/v1/loaders/{code}/submit/", {}).status_code == 200
            assert platform.post("Approver", f"/api/v1/loaders/{code}/approve/", {}).status_code == 200
        token = platform.token_create(code)
        signals = [
            {"loader_code": code, "signal_key": "rows_written", "signal_value": n, "validation_status": "SUCCESS"}
            for n in range(5)
        ]
        stored = platform.ingest(token).post(platform.url("/api/v1/signals/"), json=signals, timeout=HTTP_TIMEOUT)
        assert stored.status_code == 201, stored.text
    # An incident with a timeline: opened by the worker, notified, acknowledged and commented on.
    code = LOADERS[0]
    platform.run_failed(code, platform.token_create(code), "ORA-00942: table or view does not exist")
    [incident] = wait_until(lambda: platform.incidents(code), f"{code}'s incident", timeout=60)
    answer = platform.post("Operator", f"/api/v1/incidents/{incident['id']}/acknowledge/", {"comment": "looking"})
    assert answer.status_code == 200, answer.text
    wait_until(
        lambda: "NOTIFIED" in _kinds(platform.get("Viewer", f"/api/v1/incidents/{incident['id']}/").json()),
        "the incident's notification in its timeline",
        timeout=60,
    )


def _kinds(incident: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in incident["events"]]


def _dump_and_restore(platform: Platform, workdir: Path) -> str:
    """pg_dump the platform's database, stop writing to it, restore it into a new empty database;
    the new database's name."""
    admin = platform.admin_database
    connection = ["--host", admin["host"], "--port", str(admin["port"]), "--username", admin["user"]]
    env = {**os.environ, **({"PGPASSWORD": admin["password"]} if admin["password"] else {})}
    dump = workdir / "etl-monitor.dump"
    subprocess.run(
        ["pg_dump", *connection, "--format=custom", "--file", str(dump), platform.database],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    restored = platform.database.replace("etl_scale_backup", "etl_scale_restored")
    import psycopg

    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{restored}"')
    result = subprocess.run(
        ["pg_restore", *connection, "--no-owner", "--exit-on-error", "--dbname", restored, str(dump)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return restored


def _row_counts(platform: Platform, database: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(**{**platform.admin_database, "dbname": database}) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            ).fetchall()
        ]
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


@pytest.fixture(scope="module")
def restored(populated: Platform) -> Iterator[dict[str, Any]]:
    """The populated database dumped and restored; gunicorn serving the restored one."""
    platform = populated
    # Only the web server writes from now on (and only when asked): the copy and the original can be compared.
    for name in ("beat", "worker"):
        process_stop(platform.procs.pop(name))
    workdir = platform.workdir
    database = _dump_and_restore(platform, workdir)
    url = platform.database_url.rsplit("/", 1)[0] + f"/{database}"
    env = {**platform.env, "DATABASE_URL": url, "ETL_MONITOR_VAR_DIR": str(workdir / "var-restored")}
    port = free_port()
    web = process_start(
        [GUNICORN, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        env=platform.env_for("gunicorn-restored", env),
        log=platform.log_path("gunicorn-restored"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200, "the restored app", 60)
        yield {"base": base, "database": database, "env": env}
    finally:
        process_stop(web)
        import psycopg

        with psycopg.connect(**platform.admin_database, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _read(platform: Platform, base: str, path: str) -> Any:
    answer = platform.api("Viewer").get(base + path, params={"page_size": 100}, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
    return json.loads(answer.text.replace(base, "BASE"))


def test_the_restored_database_holds_every_row_of_the_dump(populated: Platform, restored: dict[str, Any]):
    original = _row_counts(populated, populated.database)
    copy = _row_counts(populated, restored["database"])

    assert copy == original
    assert original["loaders_loaderversion"] >= 3 * len(LOADERS)
    assert original["loaders_historicalloaderversion"] >= original["loaders_loaderversion"]
    assert original["incidents_incidentevent"] >= 3 and original["signals_app_signal"] >= 10


def test_the_app_on_the_restored_database_answers_as_the_original(populated: Platform, restored: dict[str, Any]):
    base, original = restored["base"], populated.base
    paths = ["/api/v1/loaders/", "/api/v1/incidents/", "/api/v1/channels/", "/api/v1/rules/"]
    paths += [f"/api/v1/loaders/{code}/versions/" for code in LOADERS]
    paths += [f"/api/v1/loaders/{code}/" for code in LOADERS]
    incidents = _read(populated, original, "/api/v1/incidents/")["results"]
    paths += [f"/api/v1/incidents/{incident['id']}/" for incident in incidents]

    for path in paths:
        assert _read(populated, base, path) == _read(populated, original, path), path
    versions = _read(populated, base, f"/api/v1/loaders/{LOADERS[0]}/versions/")["results"]
    assert [(v["number"], v["state"]) for v in versions] == [(3, "ACTIVE"), (2, "SUPERSEDED"), (1, "SUPERSEDED")]
    [incident] = incidents
    timeline = _kinds(_read(populated, base, f"/api/v1/incidents/{incident['id']}/"))
    assert {"OPENED", "NOTIFIED", "ACKNOWLEDGED"} <= set(timeline)


def test_the_restored_app_decrypts_the_secrets_with_the_same_key(populated: Platform, restored: dict[str, Any]):
    script = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SECRETS_SCRIPT],
        cwd=ROOT, env=restored["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr[-2000:]
    secrets = json.loads(script.stdout.strip().splitlines()[-1])

    assert secrets["channels"]["slack"] == f"xoxb-{MARKER}-channel"
    assert secrets["channels"]["e2e-slack-webhook"] == f"https://hooks.slack.com/services/T0/B0/{MARKER}"
    assert secrets["loaders"][f"{LOADERS[1]} v3"] == f"{MARKER}-{LOADERS[1]}-v3"
    # Over HTTP too: the restored app's test message reaches Slack with the channel's own bot token.
    calls = len(populated.slack.calls_to("chat.postMessage"))
    admin = populated.api("Admin")
    answer = admin.post(f"{restored['base']}/api/v1/channels/slack/test/", json={"target": "#alerts-low"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "SENT", answer.text
    [call] = populated.slack.calls_to("chat.postMessage")[calls:]
    assert call.headers["Authorization"] == f"Bearer xoxb-{MARKER}-channel"


def test_with_another_key_the_app_refuses_to_start_on_the_restored_database(restored: dict[str, Any]):
    env = {**restored["env"], "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode()}

    web = subprocess.run(
        [sys.executable, "-c", "import etl_monitor.wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert web.returncode != 0
    assert FIELD_KEY_WRONG in web.stderr, web.stderr[-2000:]
