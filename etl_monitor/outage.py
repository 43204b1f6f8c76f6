"""What a process does while Redis — the cache or the Celery broker — is away.

The database is the record: ingestion stores what it is sent and answers as usual whether or
not Redis answers. What Redis adds to a request is either optional (the ingest rate limit) or
also done later by a periodic sweep (the detection tick evaluates the rules the fast path would
have run at once; the outbox sweep sends the deliveries whose task was never queued). So a
failing Redis costs those extras, never the request:

- ``cache_call`` runs what a request can do without (counting it for a rate limit) unless the
  cache is unavailable; the caller then lets the request through.

- ``Outage`` remembers that a dependency just failed. For ``REDIS_RETRY_SECONDS`` the process
  does without it instead of asking again (a Redis that accepts connections and never answers
  would otherwise cost every request its timeout), and the log gets one warning when an outage
  starts, one a minute while it lasts and one when it ends — not one per request.
- ``task_publish`` queues a Celery task whose work a sweep also does: one attempt with short
  timeouts (``REDIS_TIMEOUT_SECONDS``), and a failure is logged, counted, and never raised.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from prometheus_client import Counter

logger = logging.getLogger(__name__)
T = TypeVar("T")

LOG_EVERY_SECONDS = 60.0  # while an outage lasts, one reminder a minute

BROKER_PUBLISH_FAILED = Counter(
    "broker_publish_failed",
    "Tasks not queued because the broker was unavailable (their work is left to a periodic sweep), by task.",
    ["task"],
)


class Outage:
    """One dependency's availability as this process last saw it (thread-safe).

    ``skip()`` says whether to do without the dependency now; the caller reports the outcome
    of each real attempt with ``failed(exc)`` or ``succeeded()``.
    """

    def __init__(self, name: str, consequence: str) -> None:
        self.name = name
        self.consequence = consequence  # what goes missing meanwhile, for the log
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._logged_at = 0.0
        self._missed = 0  # requests that did without it since the last log line

    def skip(self) -> bool:
        if self._down_since is None:  # the usual case, without taking the lock
            return False
        with self._lock:
            if self._down_since is None or time.monotonic() >= self._retry_at:
                return False
            self._missed += 1
            self._remind(time.monotonic())
            return True

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._retry_at = now + settings.REDIS_RETRY_SECONDS
            if self._down_since is None:
                self._down_since, self._logged_at, self._missed = now, now, 0
                logger.warning(
                    "%s unavailable (%s: %s): %s; asking again in %g s",
                    self.name,
                    type(exc).__name__,
                    str(exc)[:200],
                    self.consequence,
                    settings.REDIS_RETRY_SECONDS,
                )
                return
            self._missed += 1
            self._remind(now)

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            logger.warning(
                "%s available again after %.0f s (%d more requests did without it)",
                self.name,
                time.monotonic() - self._down_since,
                self._missed,
            )
            self._down_since, self._missed = None, 0

    def reset(self) -> None:
        """Forget any outage (tests; a changed configuration)."""
        with self._lock:
            self._down_since, self._retry_at, self._missed = None, 0.0, 0

    def _remind(self, now: float) -> None:
        if now - self._logged_at < LOG_EVERY_SECONDS:
            return
        logger.warning(
            "%s still unavailable after %.0f s: %s (%d requests did without it in the last %.0f s)",
            self.name,
            now - self._down_since,
            self.consequence,
            self._missed,
            now - self._logged_at,
        )
        self._logged_at, self._missed = now, 0


CACHE = Outage("cache", "requests are not rate limited (ingest, API token)")
BROKER = Outage("Celery broker", "tasks are not queued; the detection tick and the outbox sweep do their work")


def outages_reset() -> None:
    for each in (CACHE, BROKER):
        each.reset()


def cache_call(call: Callable[[], T], *, on_unavailable: Callable[[], None] | None = None) -> T | None:
    """``call()`` (which uses the cache), or None when the cache is unavailable: it failed just now
    or a moment ago (``CACHE``). For what a request can do without, such as counting it for a rate
    limit; ``on_unavailable`` is called each time it was done without (a metric)."""
    if not CACHE.skip():
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 — any cache failure (refused, hung, full): do without
            CACHE.failed(exc)
        else:
            CACHE.succeeded()
            return result
    if on_unavailable is not None:
        on_unavailable()
    return None


# --- publishing without waiting for a broker that is away ---------------------------------------

_pools: dict[tuple[int, str, float], Any] = {}
_pools_lock = threading.Lock()


def _publish_pool(app: Any) -> Any:
    """Broker connections for ``task_publish``: Celery's own, but failing fast — one connection
    attempt (kombu otherwise retries for ``broker_connection_timeout``) and socket timeouts, so
    a broker that never answers cannot hold a request. Kept apart from the pool the worker and
    the scheduler use, whose patient retries are right for them."""
    timeout = float(settings.REDIS_TIMEOUT_SECONDS)
    key = (os.getpid(), app.conf.broker_write_url, timeout)  # a forked process gets its own
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                options = {
                    **(app.conf.broker_transport_options or {}),
                    "max_retries": 0,
                    "socket_connect_timeout": timeout,
                    "socket_timeout": timeout,
                }
                connection = app.connection_for_write(connect_timeout=timeout, transport_options=options)
                pool = _pools[key] = connection.Pool(limit=app.conf.broker_pool_limit or 10)
    return pool


def task_publish(task: Any, args: tuple = (), **options: Any) -> bool:
    """Queue ``task`` unless the broker is away; return whether it was queued.

    For work a periodic sweep also does: a task not queued is counted
    (``broker_publish_failed_total``) and left to it. Never raises for the broker's sake.
    """
    app = task.app
    if app.conf.task_always_eager:  # no broker involved (development, tests)
        task.apply_async(args, **options)
        return True
    if BROKER.skip():
        BROKER_PUBLISH_FAILED.labels(task=task.name).inc()
        return False
    timeout = float(settings.REDIS_TIMEOUT_SECONDS)
    try:
        with _publish_pool(app).acquire(block=True, timeout=timeout) as connection:
            try:
                task.apply_async(args, connection=connection, retry=False, **options)
            except Exception:
                connection.collect()  # reconnect on next use rather than reuse a broken socket
                raise
    except Exception as exc:  # noqa: BLE001 — whatever the broker's failure, the sweep does the work
        BROKER.failed(exc)
        BROKER_PUBLISH_FAILED.labels(task=task.name).inc()
        return False
    BROKER.succeeded()
    return True
