"""What the benchmarks that run real workers share: production-like settings for the worker
processes, starting and stopping them, and loaders with failing signals to open incidents on."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# One field key for the benchmark's migration (bench/run.py) and its processes: they refuse to
# start when their key cannot read the key check that migrate wrote.
FIELD_ENCRYPTION_KEY = "p8lqoXkq0HbA2n8v9Bv3u5ZyGgVFr0M4f7F0nB3nYxM="


def production_env(**extra: str) -> dict[str, str]:
    """Environment of a web or worker process with production settings (DEBUG off) on the
    benchmark's database and Redis, plus ``extra``."""
    tmp = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    # prometheus_client refuses a multiprocess directory that does not exist (at import, in every process).
    (tmp / "prom").mkdir()
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-x9Kq2LmN8rTt4YbW6cQe1HfJ0gUa7oSd5iRn_MvXy-Zp2B",
        "ALLOWED_HOSTS": "127.0.0.1",
        "FIELD_ENCRYPTION_KEY": FIELD_ENCRYPTION_KEY,
        "SECURE_SSL_REDIRECT": "false",
        "REDIS_URL": REDIS_URL,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
        "ETL_MONITOR_VAR_DIR": str(tmp / "var"),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def gunicorn_command(port: int) -> list[str]:
    """gunicorn as deploy/gunicorn.conf.py configures it, on 127.0.0.1:``port``, no access log."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return [gunicorn, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
            "--access-logfile", "/dev/null"]  # fmt: skip


def maker_and_checker(prefix: str):
    """Two users for the four-eyes path: an Editor (maker) and an Approver (checker), read back
    with their groups."""
    from django.contrib.auth.models import Group, User

    from etl_monitor.roles import Role, roles_sync

    roles_sync()
    maker = User.objects.create_user(f"{prefix}-maker")
    checker = User.objects.create_user(f"{prefix}-checker")
    maker.groups.add(Group.objects.get(name=Role.EDITOR))
    checker.groups.add(Group.objects.get(name=Role.APPROVER))
    return User.objects.get(pk=maker.pk), User.objects.get(pk=checker.pk)


def healthz_wait(port: int, tries: int = 300) -> None:
    """Wait until the server on 127.0.0.1:``port`` answers /healthz with 200 (gunicorn started)."""
    import http.client
    import time

    for _ in range(tries):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


class QueryCounter:
    """Counts the SQL statements this process's default connection runs (an execute wrapper)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def queries_counted() -> Iterator[QueryCounter]:
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        yield counter


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process on this machine has used so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TimedScenario:
    """What a page benchmark reads off its samples: ``times`` (ms) and ``query_counts``, one per
    timed request."""

    times: list[float]
    query_counts: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        ordered = sorted(self.times)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    @property
    def queries(self) -> str:
        lo, hi = min(self.query_counts), max(self.query_counts)
        return str(lo) if lo == hi else f"{lo}-{hi}"


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def workers_start(count: int, env: dict[str, str], name: str, concurrency: int = 1) -> list[subprocess.Popen]:
    """``count`` Celery worker nodes (``concurrency`` pool processes each)."""
    celery = str(Path(sys.executable).with_name("celery"))
    return [
        start(
            [
                *(celery, "--app", "etl_monitor", "worker", "--concurrency", str(concurrency)),
                *("--hostname", f"{name}{i}@%h", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"),
            ],
            env,
        )
        for i in range(count)
    ]


def stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        proc.wait(timeout=30)


def broker_use_and_purge() -> None:
    """Make this process enqueue to the workers' Redis, start from an empty queue, and stop
    running tasks inline."""
    from etl_monitor.celery import app

    app.conf.broker_url = REDIS_URL
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(app.conf.task_default_queue)
    app.conf.task_always_eager = False


def failing_loaders_seed(prefix: str, count: int, team_slug: str) -> None:
    """``count`` ACTIVE loaders whose last minute holds one FAILED and one SUCCESS signal (50%:
    any failure-rate rule fires on every one of them); only the benchmark's own rules stay enabled."""
    from django.utils import timezone

    from incidents.models import DetectionRule
    from loaders.models import Loader, LoaderVersion, Team, VersionState
    from signals_app.models import Signal

    team = Team.objects.create(slug=team_slug, name=team_slug.replace("-", " ").title())
    now = timezone.now()
    loaders = Loader.objects.bulk_create(
        [
            Loader(loader_code=f"{prefix}-{i:04d}", name=f"Loader {i}", owner=team, first_activated_at=now)
            for i in range(count)
        ]
    )
    LoaderVersion.objects.bulk_create(
        [LoaderVersion(loader=loader, number=1, state=VersionState.ACTIVE) for loader in loaders]
    )
    Signal.objects.bulk_create(
        [
            Signal(loader=loader, signal_key="check", validation_status=status, captured_at=now, received_at=now)
            for loader in loaders
            for status in ("FAILED", "SUCCESS")
        ],
        batch_size=5000,
    )
    DetectionRule.objects.update(enabled=False)


def failing_loaders_drop(prefix: str, team_slug: str) -> None:
    from loaders.models import Loader, Team

    Loader.objects.filter(loader_code__startswith=f"{prefix}-").delete()
    Team.objects.filter(slug=team_slug).delete()


def platform_prepare() -> float:
    """What a benchmark on a fresh database needs first: the roles and today's signal partitions.
    Returns the load average before it starts (reported beside its figures)."""
    from etl_monitor.roles import roles_sync
    from signals_app.retention import signals_partitions_ensure

    load_before = os.getloadavg()[0]
    roles_sync()
    signals_partitions_ensure(days_before=1, days_ahead=2)
    return load_before


def fake_process_start(target: Callable[[Connection], None]) -> tuple[str, Connection, BaseProcess]:
    """A vendor's fake in a process of its own (spawned: no Django state inherited), so the platform
    under test does not share its CPU time with the benchmark's own Python. ``target(pipe)`` sends
    the fake's base URL, then answers the benchmark on that pipe (e.g. "stop" → what it received).
    Returns the URL, the benchmark's end of the pipe and the process."""
    context = multiprocessing.get_context("spawn")
    pipe, theirs = context.Pipe()
    process = context.Process(target=target, args=(theirs,), daemon=True)
    process.start()
    return pipe.recv(), pipe, process
