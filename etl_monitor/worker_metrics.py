"""The Celery worker's own metrics endpoint: what its tasks measure, which gunicorn's ``/metrics``
cannot see (ETL Monitor's calls to other services, ``http_client_request_duration_seconds``).

The worker's main process forks the pool processes that run the tasks. With WORKER_METRICS_PORT
set, the main process, before it forks, empties WORKER_METRICS_DIR and points prometheus_client's
multiprocess mode there (``PROMETHEUS_MULTIPROC_DIR``, inherited by every pool process, each
writing its own files); then it serves the sum over all of them on the port. So:

- a pool process that is replaced (``--max-tasks-per-child``, a crash) leaves its files: its
  counts stay in the sum, as a counter must; ``worker_child_exited`` marks it dead for the kinds
  of gauge that follow live processes (none today);
- the directory is the worker's own, never the web's (``var/prometheus``): nothing is counted by
  both endpoints, and a restart of one does not wipe the other's counts;
- several workers (pods, or processes on one host, each with its own directory and port) are
  scraped separately; Prometheus adds them up (``sum without (instance)``).

The endpoint serves these counts only: the state gauges of ``/metrics`` (open incidents…) are read
from the database by the web, once per scrape, and would be counted twice here.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


def _web_metrics_dir() -> Path:
    """Where gunicorn keeps the web's values (deploy/gunicorn.conf.py)."""
    return Path(settings.VAR_DIR, "prometheus").resolve()


def worker_metrics_prepare() -> Path | None:
    """In the worker's main process, before any pool process is forked and before a metric value is
    made: empty the worker's directory and use it for multiprocess mode. None when the endpoint is
    off (the values stay in each process, unseen, as before)."""
    if not settings.WORKER_METRICS_PORT:
        return None
    directory = Path(settings.WORKER_METRICS_DIR).resolve()
    inherited = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory == _web_metrics_dir() or (inherited and directory == Path(inherited).resolve()):
        # The web's directory: both endpoints would count the same values, and each start wipes
        # the other's.
        raise ImproperlyConfigured(
            f"WORKER_METRICS_DIR ({directory}) must not be the web's metrics directory: give the worker its own."
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if "prometheus_client.values" in sys.modules:
        # Imported already (a module read at start-up defines its metrics): the kind of value is
        # chosen at that import, so choose again. Values are made per label set on first use, in
        # the pool processes, after this.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return directory


def worker_metrics_serve() -> Any:
    """Serve the sum over the worker's processes on WORKER_METRICS_ADDR:WORKER_METRICS_PORT (a
    daemon thread of the main process); return the server."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server, _thread = start_http_server(settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_ADDR, registry)
    logger.info(
        "worker metrics on http://%s:%s/metrics (from %s)",
        settings.WORKER_METRICS_ADDR,
        settings.WORKER_METRICS_PORT,
        os.environ["PROMETHEUS_MULTIPROC_DIR"],
    )
    return server


def worker_child_exited(pid: int) -> None:
    """A pool process ended: its live gauges leave the sum (its counters stay, as they must)."""
    if settings.WORKER_METRICS_PORT and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
