"""A real Celery worker (and beat) in separate processes, over the configured broker.

Without REDIS_URL the broker is the embedded filesystem transport that
``make run`` uses; with REDIS_URL (CI's second run) it is Redis.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from etl_monitor.celery import app
from etl_monitor.health import HEARTBEAT_CACHE_KEY, heartbeat_last
from etl_monitor.tasks import platform_heartbeat
from tests.processes import process_stop

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def purge_broker() -> None:
    """Start from an empty queue: a broker shared with earlier tests (or runs) may hold their tasks.
    A queue that does not exist yet has nothing to purge."""
    with app.connection_for_write() as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_purge(app.conf.task_default_queue)


@contextmanager
def celery_process(*args: str, env: dict[str, str] | None = None):
    purge_broker()
    proc = subprocess.Popen(
        [CELERY, "--app", "etl_monitor", *args, "--loglevel", "INFO"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        process_stop(proc)


def wait_for_heartbeat(after, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = heartbeat_last()
        if last is not None and last > after:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    output = ""
    if proc.poll() is not None:
        output = proc.stdout.read()
    pytest.fail(f"no heartbeat from the worker within {timeout}s; process exit={proc.poll()} output:\n{output[-3000:]}")


def _expected_broker() -> str:
    return "redis" if os.environ.get("REDIS_URL") else "filesystem"


@pytest.fixture
def not_eager(monkeypatch):
    monkeypatch.setitem(app.conf, "task_always_eager", False)


def test_a_real_worker_executes_an_enqueued_task(db, not_eager):
    assert app.conf.broker_url.split(":")[0] == _expected_broker()
    cache.delete(HEARTBEAT_CACHE_KEY)
    started = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    with celery_process("worker", "--concurrency", "1", "--without-gossip", "--without-mingle") as proc:
        platform_heartbeat.apply_async()
        wait_for_heartbeat(started, proc, timeout=60)


@pytest.mark.services
def test_the_worker_runs_on_redis_in_ci(require_redis, db, not_eager):
    assert app.conf.broker_url == require_redis
    cache.delete(HEARTBEAT_CACHE_KEY)
    with celery_process("worker", "--concurrency", "1", "--without-gossip", "--without-mingle") as proc:
        result = platform_heartbeat.apply_async()
        assert result.id
        wait_for_heartbeat(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), proc, timeout=60)


def heartbeat_overdue() -> None:
    """The heartbeat's schedule entry, as last run long ago: the scheduler sends it at its first tick.
    The scheduler keeps an entry's last run when it installs etl_monitor/schedule.py over it (it
    writes the schedule's own fields only)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=30, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="platform-heartbeat",
        task="etl_monitor.tasks.platform_heartbeat",
        interval=every,
        last_run_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )


@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_run_the_scheduled_heartbeat(tmp_path, not_eager):
    """The scheduler (django-celery-beat's database scheduler) sends the heartbeat; the worker runs it.

    The heartbeat's entry is in the database as last run long ago, so the scheduler sends it at its
    first tick rather than one interval (30 s) after starting: the test waits for the scheduler and
    the worker, not for the clock."""

    env = {}
    if connection.vendor == "sqlite":
        # The test database is in memory; give the processes a migrated file database.
        db_url = f"sqlite:///{tmp_path / 'beat.sqlite3'}"
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": db_url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrated.returncode == 0, migrated.stderr
        env["DATABASE_URL"] = db_url
        overdue_code = f"from {__name__} import heartbeat_overdue; heartbeat_overdue()"
        overdue = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", overdue_code],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert overdue.returncode == 0, overdue.stderr
    else:
        heartbeat_overdue()
        db_settings = settings.DATABASES["default"]
        env["DATABASE_URL"] = (
            f"postgres://{db_settings['USER']}@{db_settings['HOST'] or '127.0.0.1'}:{db_settings['PORT'] or 5432}/"
            f"{db_settings['NAME']}"
        )
    cache.delete(HEARTBEAT_CACHE_KEY)
    with celery_process(
        "worker",
        "--beat",
        "--concurrency",
        "1",
        "--without-gossip",
        "--without-mingle",
        "--schedule",
        str(tmp_path / "beat-schedule"),
        env=env,
    ) as proc:
        wait_for_heartbeat(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), proc, timeout=90)


RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.mark.services
def test_the_tasks_can_go_through_rabbitmq_while_redis_keeps_the_cache(require_redis, db, not_eager):
    """CELERY_BROKER_URL=amqp://… (docs/scaling.md): a worker takes a task from RabbitMQ, and what
    it does is seen through the shared Redis cache."""
    import kombu

    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=3) as probe:
            probe.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means no RabbitMQ here
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"RabbitMQ at {RABBITMQ_URL} is not reachable in CI: {exc}")
        pytest.skip(f"RabbitMQ not reachable at {RABBITMQ_URL}: {exc}")
    cache.delete(HEARTBEAT_CACHE_KEY)
    with celery_process(
        "worker", "--concurrency", "1", "--without-gossip", "--without-mingle", env={"CELERY_BROKER_URL": RABBITMQ_URL}
    ) as proc:
        with kombu.Connection(RABBITMQ_URL) as rabbit:
            app.send_task("etl_monitor.tasks.platform_heartbeat", connection=rabbit)
        wait_for_heartbeat(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), proc, timeout=60)
    assert "amqp://guest:**@127.0.0.1:5672//" in proc.stdout.read()  # the worker's banner: it used RabbitMQ
