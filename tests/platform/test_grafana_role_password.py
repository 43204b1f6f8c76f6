"""``grafana_role --password-env`` sends PostgreSQL a SCRAM-SHA-256 verifier, never the password.

The verifier is computed on our side (libpq's ``PQencryptPasswordConn``), so the plaintext never
reaches the server and cannot appear in its statement log. The test database's server trusts
every connection from 127.0.0.1, so logging in there would prove nothing about the password: the
login proof copies the stored verifier into a private PostgreSQL cluster that accepts only
``scram-sha-256`` and signs in with the password (and fails with a wrong one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import sql

from tests.conftest import _service_unavailable

pytestmark = pytest.mark.django_db

PASSWORD = "grafana-Pa55 wörd"  # a space and a non-ASCII letter: SASLprep has work to do


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


@pytest.fixture
def role(require_postgres: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GRAFANA_TEST_PASSWORD", PASSWORD)
    return f"grafana_pw_{uuid.uuid4().hex[:8]}"


def stored_password(role: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role])
        return cursor.fetchone()[0]


@pytest.fixture
def scram_only_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free port that authenticates TCP clients by
    scram-sha-256 only; yields the conninfo of its superuser (over the Unix socket, trusted)."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        _service_unavailable("PostgreSQL server binaries (initdb, pg_ctl)")
    home = Path(tempfile.mkdtemp(prefix="etl-scram-"))
    # initdb refuses to run as root: run the cluster as the postgres user then.
    runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if runas:
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    subprocess.run(
        [*runas, initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    # The server's output goes to a log file: a pipe would stay open as long as the server runs.
    subprocess.run(
        [*runas, pg_ctl, "-D", str(data), "-l", str(home / "server.log"), "-o", options, "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    try:
        yield f"host={home} port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(
            [*runas, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(home, ignore_errors=True)


def test_it_stores_a_scram_verifier_that_matches_the_password(role: str) -> None:
    call_command("grafana_role", role=role, password_env="GRAFANA_TEST_PASSWORD", stdout=io.StringIO())

    verifier = stored_password(role)
    method, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert method == "SCRAM-SHA-256" and int(iterations) >= 4096
    # RFC 5802 from the salt and iteration count PostgreSQL holds (the password is NFKC-stable ASCII
    # apart from "ö", which SASLprep leaves as it is).
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    assert stored_key == hashlib.sha256(client_key).digest()
    assert server_key == hmac.new(salted, b"Server Key", "sha256").digest()


def test_the_password_never_travels_to_the_server(role: str) -> None:
    sent: list[str] = []

    def spy(execute, statement, params, many, context):
        sent.append(f"{statement} {params}")
        return execute(statement, params, many, context)

    with connection.execute_wrapper(spy):
        call_command("grafana_role", role=role, password_env="GRAFANA_TEST_PASSWORD", stdout=io.StringIO())

    assert any("PASSWORD 'SCRAM-SHA-256$" in statement for statement in sent)
    assert not any(PASSWORD in statement for statement in sent)


def test_running_again_gives_a_new_salt(role: str) -> None:
    call_command("grafana_role", role=role, password_env="GRAFANA_TEST_PASSWORD", stdout=io.StringIO())
    first = stored_password(role)
    call_command("grafana_role", role=role, password_env="GRAFANA_TEST_PASSWORD", stdout=io.StringIO())
    assert stored_password(role) != first
    call_command("grafana_role", role=role, stdout=io.StringIO())  # NOLOGIN: no password left to use
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [role])
        assert cursor.fetchone() == (False,)


def test_the_role_signs_in_with_the_password_by_scram(role: str, scram_only_server: str) -> None:
    call_command("grafana_role", role=role, password_env="GRAFANA_TEST_PASSWORD", stdout=io.StringIO())
    verifier = stored_password(role)
    with psycopg.connect(scram_only_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
        port = admin.execute("SHOW port").fetchone()[0]
    tcp = f"host=127.0.0.1 port={port} dbname=postgres user={role} connect_timeout=5"

    with psycopg.connect(f"{tcp} password='{PASSWORD}'") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
        assert conn.pgconn.used_password
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"{tcp} password='{PASSWORD}x'")
