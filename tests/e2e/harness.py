"""The platform as production runs it, for the end-to-end suite.

One ``Platform`` per test session: a PostgreSQL database of its own (never pytest-django's test
database), a Redis server the harness starts on a free port (so a test can stop it and start it
again), gunicorn with two workers, a Celery worker and Celery beat, all as subprocesses with
production settings (DEBUG off, real SECRET_KEY and FIELD_ENCRYPTION_KEY), and local fakes of
Slack, Jira, Twilio and an SMTP server in the test process. Tests talk to it over HTTP only, as its users and jobs do.

Every secret the harness configures contains ``MARKER`` (random per session), so one search of a
page or a log file finds any of them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.integrations import fakes, jira_fake
from tests.integrations.twilio_fake import FROM_NUMBER, FakeTwilio
from tests.mailbox import Mailbox
from tests.net import free_port
from tests.processes import CELERY, GUNICORN, celery_worker, process_start, process_stop

T = TypeVar("T")

MARKER = f"e2eSECRET{secrets.token_hex(5)}"
ROLES = ("Viewer", "Editor", "Approver", "Operator", "Admin")
TEAM = "e2e-team"
# Accounts the login-throttling tests lock out; nobody else logs in with them.
VICTIMS = ("e2e-victim-admin", "e2e-victim-drf", "e2e-victim-token")
HTTP_TIMEOUT = 30

# Users per role (and the victims), a team, created in the platform's database by its own code.
SETUP_SCRIPT = """
import json, os
from django.contrib.auth.models import Group, User
from etl_monitor.roles import roles_sync
from loaders.models import Team
roles_sync()
for username, (role, password) in json.loads(os.environ["E2E_USERS"]).items():
    user = User.objects.create_user(username=username, password=password, is_staff=True)
    user.groups.set(Group.objects.filter(name=role))
Team.objects.create(slug=os.environ["E2E_TEAM"], name="E2E team", email="e2e@example.com")
"""


def http_session() -> requests.Session:
    """A client session that sends a read-only request again when the server closed the kept-alive
    connection at the moment it was reused (gunicorn drops idle keep-alive connections after two
    seconds; the race answers "Connection reset by peer" before any byte of the request was read).
    Only GET and HEAD are resent, so no write is ever repeated; a server that really fails still
    fails the test after the retries."""
    session = requests.Session()
    retry = Retry(
        total=3,
        connect=3,
        read=3,
        status=0,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=0.2,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def wait_until(condition: Callable[[], T | None], what: str, timeout: float, interval: float = 0.5) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (requests.RequestException, ValueError, KeyError) as exc:  # a restarting service: try again
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last_error})" if last_error else "")
    )


def _db_settings(url: str) -> dict[str, Any]:
    import environ

    return environ.Env.db_url_config(url)


@dataclass
class Platform:
    """The running platform and what the tests need to drive it."""

    workdir: Path
    database_url: str
    admin_database: dict[str, Any]
    database: str
    env: dict[str, str]
    base: str
    redis_port: int
    slack: fakes.FakeSlack
    jira: jira_fake.FakeJira
    inbox: Mailbox
    passwords: dict[str, str] = field(default_factory=dict)  # username → password
    tokens: dict[str, str] = field(default_factory=dict)  # role → user API token
    admin_sessions: dict[str, requests.Session] = field(default_factory=dict)  # role → logged-in admin session
    # Every credential handed out (keys, tokens, secrets): none may ever appear in a log.
    credentials: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    stops: list[Callable[[], None]] = field(default_factory=list)
    twilio: FakeTwilio = field(default_factory=lambda: FakeTwilio(auth_token=f"{MARKER}-twilio-auth"))

    @property
    def slack_signing_secret(self) -> str:
        """What the Slack app signs its requests with (SLACK_SIGNING_SECRET of the platform)."""
        return f"{MARKER}-slack-signing"

    # --- addresses and clients -----------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base + path

    @staticmethod
    def username(role: str) -> str:
        return f"e2e-{role.lower()}"

    def api(self, role: str) -> requests.Session:
        """A client authenticated with ``role``'s user API token."""
        session = http_session()
        session.headers["Authorization"] = f"Token {self.tokens[role]}"
        return session

    def ingest(self, token: str) -> requests.Session:
        """A job's client: its ingest token as the bearer."""
        session = http_session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def get(self, role: str, path: str, **kwargs: Any) -> requests.Response:
        return self.api(role).get(self.url(path), timeout=HTTP_TIMEOUT, **kwargs)

    def post(self, role: str, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.api(role).post(self.url(path), json=body, timeout=HTTP_TIMEOUT, **kwargs)

    def patch(self, role: str, path: str, body: Any) -> requests.Response:
        return self.api(role).patch(self.url(path), json=body, timeout=HTTP_TIMEOUT)

    # --- set-up over the API --------------------------------------------------------------------
    def loader_create(self, code: str, **contract: Any) -> str:
        """A loader with an ACTIVE v1: drafted by the Editor, approved by the Approver (four eyes)."""
        body = {
            "loader_code": code,
            "name": f"{code} (end-to-end)",
            "owner": TEAM,
            "default_severity": "HIGH",
            "connection_password": f"{MARKER}-loader-{code}",
            **contract,
        }
        created = self.post("Editor", "/api/v1/loaders/", body)
        assert created.status_code == 201, created.text
        submitted = self.post("Editor", f"/api/v1/loaders/{code}/submit/", {})
        assert submitted.status_code == 200, submitted.text
        approved = self.post("Approver", f"/api/v1/loaders/{code}/approve/", {})
        assert approved.status_code == 200, approved.text
        return code

    def token_create(self, code: str, kind: str = "API") -> str:
        """A new ingest token (kind API) or ping key (kind PING) of loader ``code``; the plaintext."""
        answer = self.post("Editor", f"/api/v1/loaders/{code}/tokens/", {"name": f"e2e {kind.lower()}", "kind": kind})
        assert answer.status_code == 201, answer.text
        raw = answer.json()["token"]
        self.credentials.append(raw)
        return raw

    def run_failed(self, code: str, token: str, error_text: str) -> str:
        """What a job does when it fails: start a run, then finish it FAILED; the run id."""
        client = self.ingest(token)
        run_id = str(uuid.uuid4())
        started = client.post(self.url("/api/v1/runs/"), json={"loader_code": code, "run_id": run_id}, timeout=30)
        failed = client.patch(
            self.url(f"/api/v1/runs/{run_id}/"),
            json={"status": "FAILED", "error_text": error_text},
            timeout=HTTP_TIMEOUT,
        )
        assert (started.status_code, failed.status_code) == (201, 200), failed.text
        return run_id

    def incidents(self, code: str, rule: str = "Run failed") -> list[dict[str, Any]]:
        """``code``'s incidents opened by ``rule``."""
        answer = self.get("Viewer", "/api/v1/incidents/", params={"loader": code, "rule": rule})
        answer.raise_for_status()
        return answer.json()["results"]

    # --- Redis ----------------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_start(self) -> None:
        import redis

        self.procs["redis"] = process_start(
            [
                *("redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            env=self.env,
            log=self.log_path("redis"),
        )
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        wait_until(lambda: _redis_answers(client), "Redis to answer", timeout=20, interval=0.1)

    def redis_stop(self) -> None:
        process_stop(self.procs.pop("redis"))

    # --- logs -----------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace") for path in sorted((self.workdir / "logs").glob("*.log"))}

    # --- start and stop ---------------------------------------------------------------------------
    def env_for(self, name: str, env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of process ``name``: its own metrics directory (prometheus_client's
        multiprocess mode writes one there per process; gunicorn empties its own at start)."""
        metrics = self.workdir / "prometheus" / name
        metrics.mkdir(parents=True, exist_ok=True)
        return {**(env or self.env), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}

    def start(self) -> None:
        """Start everything, doing in parallel what does not depend on each other (this machine's
        CPUs are few; the suite's time is mostly start-up)."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.stops.append(fakes.serve(self.slack))
        self.stops.append(jira_fake.serve(self.jira))
        self.twilio.start()
        self.stops.append(self.twilio.stop)
        self.inbox.start()
        self.stops.append(self.inbox.stop)
        self._database_create()
        self.env = self._environment()
        self._all_succeed(
            [self._manage("migrate", "--noinput", "-v0"), self._manage("collectstatic", "--noinput", "-v0")]
        )
        users = self._users_create()
        self.redis_start()
        self._processes_start()
        self._all_succeed([users])
        # Ready: database and broker reachable, the worker consuming, beat scheduling. (Beat's first
        # heartbeat comes a full interval after it starts: not worth waiting for.)
        wait_until(self._ready, "/readyz, the worker and beat", timeout=90)
        self._sign_in()
        self._configure()

    def _processes_start(self) -> None:
        """The platform's own programs: gunicorn, a Celery worker and beat."""
        port = int(self.base.rsplit(":", 1)[1])
        self.procs["gunicorn"] = process_start(
            [GUNICORN, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
            env=self.env_for("gunicorn"),
            log=self.log_path("gunicorn"),
        )
        celery = [CELERY, "--app", "etl_monitor"]
        self.procs["worker"] = process_start(
            celery_worker("--loglevel", "INFO", concurrency=2),
            env=self.env_for("worker"),
            log=self.log_path("worker"),
        )
        self.procs["beat"] = process_start(
            [*celery, "beat", "--loglevel", "INFO", "--schedule", str(self.workdir / "beat-schedule")],
            env=self.env_for("beat"),
            log=self.log_path("beat"),
        )

    def stop(self) -> None:
        for name in ("beat", "worker", "gunicorn", "redis"):
            if name in self.procs:
                process_stop(self.procs.pop(name))
        for stop in self.stops:
            stop()
        self._database_drop()

    def _ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while starting")
        logs = self.logs()
        if not re.search(r"celery@\S+ ready", logs.get("worker", "")) or "beat: Starting" not in logs.get("beat", ""):
            return False
        return requests.get(self.url("/readyz"), timeout=5).status_code == 200

    def _database_create(self) -> None:
        import psycopg

        with psycopg.connect(**self.admin_database, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def _database_drop(self) -> None:
        import psycopg

        with psycopg.connect(**self.admin_database, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")
        return {
            **{name: os.environ[name] for name in keep if name in os.environ},
            "PYTHONUNBUFFERED": "1",
            # Production settings, with plain HTTP on loopback allowed (no TLS proxy in front).
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ETL_MONITOR_VAR_DIR": str(self.workdir / "var"),
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "4",
            "ETL_MONITOR_BASE_URL": self.base,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.inbox.port),
            "SLACK_BOT_TOKEN": f"xoxb-{MARKER}-bot",
            "SLACK_API_BASE_URL": self.slack.url,
            "JIRA_ENABLED": "true",
            "JIRA_BASE_URL": self.jira.url,
            "JIRA_USERNAME": self.jira.username,
            "JIRA_API_TOKEN": self.jira.token,
            "JIRA_PROJECT": "OPS",
            "JIRA_WEBHOOK_SECRET": f"{MARKER}-jira-webhook",
            "JIRA_TIMEOUT": "5",
            "ALERTMANAGER_WEBHOOK_TOKEN": f"{MARKER}-alertmanager",
            "NOTIFY_BACKOFF_BASE_SECONDS": "1",
            "NOTIFY_BACKOFF_MAX_SECONDS": "5",
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": self.twilio.url,
        }

    def _manage(self, *args: str, env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen]:
        """``manage.py <args>`` started; ``_all_succeed`` waits for it."""
        log = self.log_path(f"manage-{args[0]}")
        command = [sys.executable, "manage.py", *args]
        return args[0], process_start(command, env=self.env_for(f"manage-{args[0]}", env), log=log)

    def shell(self, script: str, **env: str) -> None:
        """Run ``script`` in the platform's ``manage.py shell`` (set-up no API offers), ``env`` added
        to its environment; fail with its output if it fails."""
        self._all_succeed([self._manage("shell", "-c", script, env={**self.env, **env})])

    def _all_succeed(self, started: list[tuple[str, subprocess.Popen]]) -> None:
        for command, proc in started:
            if proc.wait(timeout=300) != 0:
                output = self.log_path(f"manage-{command}").read_text(errors="replace")
                raise AssertionError(f"manage.py {command} failed ({proc.returncode}):\n{output[-3000:]}")

    def _users_create(self) -> tuple[str, subprocess.Popen]:
        users: dict[str, tuple[str, str]] = {}
        for role in ROLES:
            users[self.username(role)] = (role, secrets.token_urlsafe(18))
        for victim in VICTIMS:
            users[victim] = ("Viewer", secrets.token_urlsafe(18))
        self.passwords = {name: password for name, (_role, password) in users.items()}
        self.credentials.extend(self.passwords.values())
        env = {**self.env, "E2E_USERS": json.dumps(users), "E2E_TEAM": TEAM}
        return self._manage("shell", "-c", SETUP_SCRIPT, env=env)

    def _sign_in(self) -> None:
        """Each role's API token and admin session, obtained once at the start: the throttling tests
        lock accounts (and perhaps this client's address) out later."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:  # each login hashes a password: use both workers
            signed_in = dict(zip(ROLES, pool.map(self._role_sign_in, ROLES), strict=True))
        for role, (token, session) in signed_in.items():
            self.tokens[role] = token
            self.credentials.append(token)
            self.admin_sessions[role] = session

    def _role_sign_in(self, role: str) -> tuple[str, requests.Session]:
        username = self.username(role)
        answer = requests.post(
            self.url("/api/v1/auth/token/"),
            data={"username": username, "password": self.passwords[username]},
            timeout=HTTP_TIMEOUT,
        )
        assert answer.status_code == 200, answer.text
        session = http_session()
        login = admin_login(session, self.base, username, self.passwords[username])
        assert session.cookies.get("sessionid"), f"{role} could not log in to the admin: {login.status_code}"
        return answer.json()["token"], session

    def _configure(self) -> None:
        """What an Admin configures: a secret (containing MARKER) in every secret field, and short
        detection intervals so that detection catching up is quick to observe."""
        secret_channels = [
            {"name": "e2e-webhook", "kind": "WEBHOOK", "url": "http://127.0.0.1:9/hook", "secret": f"{MARKER}-hmac"},
            {
                "name": "e2e-slack-webhook",
                "kind": "SLACK_WEBHOOK",
                "secret": f"https://hooks.slack.com/services/T0/B0/{MARKER}",
            },
        ]
        for channel in secret_channels:
            answer = self.post("Admin", "/api/v1/channels/", channel)
            assert answer.status_code == 201, answer.text
        # The routed Slack channel uses its own bot token (the fake accepts any xoxb- token).
        answer = self.patch("Admin", "/api/v1/channels/slack/", {"secret": f"xoxb-{MARKER}-channel"})
        assert answer.status_code == 200, answer.text
        sources = [
            {"name": "e2e-prometheus", "kind": "PROMETHEUS", "url": "http://127.0.0.1:9", "auth": "BEARER"},
            {"name": "e2e-elastic", "kind": "ELASTICSEARCH", "url": "http://127.0.0.1:9", "auth": "BASIC"},
        ]
        for source in sources:
            body = {**source, "secret": f"{MARKER}-{source['name']}", "enabled": False}
            if source["auth"] == "BASIC":
                body["username"] = "elastic"
            answer = self.post("Admin", "/api/v1/data-sources/", body)
            assert answer.status_code == 201, answer.text
        self.credentials.extend(
            [
                self.env["SECRET_KEY"],
                self.env["FIELD_ENCRYPTION_KEY"],
                self.twilio.auth_token,
                self.slack_signing_secret,
            ]
        )
        rules = self.get("Admin", "/api/v1/rules/", params={"page_size": 100}).json()["results"]
        for rule in rules:
            if rule["enabled"] and rule["kind"] in ("run_failed", "signal_failure_rate"):
                answer = self.patch("Admin", f"/api/v1/rules/{rule['id']}/", {"interval_seconds": 10})
                assert answer.status_code == 200, answer.text


def admin_login(
    session: requests.Session, base: str, username: str, password: str, headers: dict[str, str] | None = None
) -> requests.Response:
    """Log in through the admin's login form as a browser does (CSRF cookie and form token)."""
    return form_login(session, f"{base}/admin/login/", username, password, next_url="/admin/", headers=headers)


def form_login(
    session: requests.Session,
    url: str,
    username: str,
    password: str,
    *,
    next_url: str,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    page = session.get(url, timeout=HTTP_TIMEOUT, headers=headers)
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    token = found.group(1) if found else session.cookies.get("csrftoken", "")
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": next_url}
    return session.post(url, data=form, timeout=HTTP_TIMEOUT, allow_redirects=False, headers=headers)


def _redis_answers(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def platform_for(workdir: Path, database_url: str, name_prefix: str = "etl_monitor_e2e") -> Platform:
    """A platform (not started yet) on the PostgreSQL server of ``database_url``, in a new database
    whose name starts with ``name_prefix``."""
    db = _db_settings(database_url)
    database = f"{name_prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_database = {
        "host": db["HOST"] or "127.0.0.1",
        "port": int(db["PORT"] or 5432),
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "dbname": "postgres",
    }
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{credentials}@{admin_database['host']}:{admin_database['port']}/{database}"
    return Platform(
        workdir=workdir,
        database_url=url,
        admin_database=admin_database,
        database=database,
        env={},
        base=f"http://127.0.0.1:{free_port()}",
        redis_port=free_port(),
        slack=fakes.FakeSlack(),
        jira=jira_fake.FakeJira(token=f"{MARKER}-jira-api"),
        inbox=Mailbox(),
    )


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None
