"""Starting and stopping the platform's own programs (gunicorn, celery, redis-server) from tests:
each in a session of its own, so stopping it also stops the workers it forked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CELERY = str(Path(sys.executable).with_name("celery"))


def postgres_test_url() -> str:
    """The URL of the test database (PostgreSQL) for a process a test starts: the test's own
    connections and the process's then see the same rows once committed."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def celery_worker(*extra: str, concurrency: int = 1) -> list[str]:
    """The command of a Celery worker as deploy/Procfile.dev runs it (a test's worker is alone: no
    gossip, no mingle), plus ``extra`` options."""
    return [CELERY, "--app", "etl_monitor", "worker", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", *extra]  # fmt: skip


def process_start(args: Sequence[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``args`` in the project directory, its output (stdout and stderr) appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def process_stop(proc: subprocess.Popen, *, timeout: float = 20) -> None:
    """SIGTERM the process group (a graceful shutdown), then SIGKILL what is still there."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


class RedisServer:
    """A redis-server of the test's own on a free port (never the shared one), stoppable."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = process_start(args, env=os.environ, log=self.log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            process_stop(self.process)
            self.process = None

    def queued(self) -> int:
        import redis

        return redis.Redis.from_url(self.url).llen("celery")
