"""The end-to-end suite's one platform (see tests/e2e/harness.py), started once per session.

It needs a PostgreSQL server (DATABASE_URL names it; the platform gets a database of its own there)
and the ``redis-server`` program: without them the suite skips, and in CI (CI=true) it fails.
The platform's logs are attached to every failing test's report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _service_unavailable
from tests.e2e.harness import Platform, platform_for, redis_server_available

LOG_TAIL_LINES = 80
_running: list[Platform] = []
_failed: list[str] = []


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        _service_unavailable("PostgreSQL (DATABASE_URL) for the end-to-end platform")
    if not redis_server_available():
        _service_unavailable("The redis-server program for the end-to-end platform")
    # A directory of its own, not under pytest's rotating tmp dirs (other runs would prune it):
    # kept with its logs when a test failed, removed otherwise.
    workdir = Path(tempfile.mkdtemp(prefix="etl-monitor-e2e-"))
    with platform_running(platform_for(workdir, database_url), "end-to-end platform") as running:
        yield running


@contextmanager
def platform_running(platform: Platform, what: str) -> Iterator[Platform]:
    """Start ``platform`` and stop it at the end; meanwhile its logs are attached to every failing
    test's report. Its work directory is removed after a green run, kept (its path printed) after a
    failure or with E2E_KEEP=1."""
    _running.append(platform)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        _running.remove(platform)
        if _failed or os.environ.get("E2E_KEEP"):
            print(f"\n{what} logs kept in {platform.workdir / 'logs'}")
        else:
            shutil.rmtree(platform.workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _running:
        _failed.append(item.nodeid)
        # A process that died explains a timeout at once (its log's tail says why).
        states = [
            f"{name}: " + ("running" if proc.poll() is None else f"EXITED with {proc.returncode}")
            for name, proc in _running[0].procs.items()
        ]
        report.sections.append(("e2e platform: processes", "\n".join(states)))
        for name, text in _running[0].logs().items():
            tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
            report.sections.append((f"e2e platform: {name}.log (last {LOG_TAIL_LINES} lines)", tail))
