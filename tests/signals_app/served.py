"""The app served by real gunicorn workers for a test (deploy/gunicorn.conf.py, multiprocess
metrics), against the test's own PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.net import free_port
from tests.processes import GUNICORN, postgres_test_url, process_start, process_stop


def http(url: str, *, body: bytes | None = None, token: str = "") -> tuple[int, bytes, float]:
    """GET ``url``, or POST ``body`` as JSON with an ingest token; the status, the body and the seconds taken."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("Connection", "close")  # a new connection each time spreads requests over workers
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read(), time.monotonic() - started


@contextmanager
def gunicorn_serving(tmp_path: Path, env: Mapping[str, str]) -> Iterator[str]:
    """Two gunicorn workers serving the app (``env`` added to this process's); yields the base
    URL once ``/healthz`` answers, stops them after. Metrics files go to ``tmp_path/prom``."""
    port = free_port()
    full_env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": postgres_test_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "ETL_MONITOR_VAR_DIR": str(tmp_path / "var"),
        "WEB_CONCURRENCY": "2",
        **env,
    }
    args = [GUNICORN, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    proc: subprocess.Popen = process_start(args, env=full_env, log=tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if http(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        process_stop(proc)


def worker_pids(tmp_path: Path) -> set[str]:
    """The gunicorn workers that counted something (one metrics file per process)."""
    return {p.name.split("_")[-1] for p in (tmp_path / "prom").glob("counter_*.db")}
