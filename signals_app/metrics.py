"""Prometheus metrics of ingestion, correct with several web worker processes.

gunicorn runs several processes; each counts what it received. With
``PROMETHEUS_MULTIPROC_DIR`` set (deploy/gunicorn.conf.py sets it), prometheus_client
keeps each process's values in a memory-mapped file there and ``/metrics``
adds them up, so a scrape sees the total whichever worker answers. Without
it (tests, ``runserver``), the process's own registry is used.

State ("how many incidents are open now") cannot be a counter per process: apps above this one
register a collector with ``state_collector_register`` and ``exposition`` runs it once per scrape,
in the worker that answers, so its values are read from the database and never added up across
workers. This app imports none of them (the import layers forbid it).
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.registry import Collector

SIGNALS_RECEIVED = Counter(
    "signals_received",
    "Signals stored, by loader and validation status.",
    ["loader_code", "validation_status"],
)
LOADER_EXECUTION_SECONDS = Histogram(
    "loader_execution_seconds",
    "Duration of finished loader runs.",
    ["loader_code"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
)
RUNS_FINISHED = Counter("loader_runs_finished", "Finished loader runs, by status.", ["loader_code", "status"])
RATE_LIMIT_UNAVAILABLE = Counter(
    "ingest_rate_limit_unavailable",
    "Ingest requests let through without a rate limit because the cache (Redis) was unavailable.",
)


def signals_received(pairs: Iterable[tuple[str, str]]) -> None:
    """Count stored signals given as (loader_code, validation_status) pairs."""
    tally = Tally(pairs)
    for (code, status), count in tally.items():
        SIGNALS_RECEIVED.labels(loader_code=code, validation_status=status).inc(count)


def run_finished(run: Any) -> None:
    code = run.loader.loader_code
    RUNS_FINISHED.labels(loader_code=code, status=run.status).inc()
    if run.duration_seconds is not None:
        LOADER_EXECUTION_SECONDS.labels(loader_code=code).observe(run.duration_seconds)


def rate_limit_unavailable() -> None:
    RATE_LIMIT_UNAVAILABLE.inc()


_STATE_COLLECTORS: list[Collector] = []


def state_collector_register(collector: Collector) -> None:
    """Add ``collector`` to every scrape (one of each class, however often an app's ``ready`` runs).

    It is kept out of the process registries on purpose: it runs in the answering worker only,
    and only when ``/metrics`` is scraped, never at registration."""
    if not any(type(known) is type(collector) for known in _STATE_COLLECTORS):
        _STATE_COLLECTORS.append(collector)


def exposition() -> tuple[bytes, str]:
    """The counters of all processes (multiprocess mode) or of this one, and the state collectors'
    values read now."""
    # auto_describe=False: registering must not run a collector (that would query the database).
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(DEFAULT_REGISTRY)
    for collector in _STATE_COLLECTORS:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
