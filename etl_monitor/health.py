"""Liveness, readiness and the worker heartbeat.

``/healthz`` answers as long as the process serves requests. ``/readyz`` checks
what the platform needs to do its job (the database and the Celery broker) and
names the failing part, so a load balancer and a human read the same answer.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

HEARTBEAT_CACHE_KEY = "platform:worker-heartbeat"
BROKER_TIMEOUT_SECONDS = 2.0


def heartbeat_record() -> dt.datetime:
    """Store "a worker ran a scheduled task now" where every process can read it."""
    now = timezone.now()
    cache.set(HEARTBEAT_CACHE_KEY, now.isoformat(), timeout=24 * 3600)
    return now


def heartbeat_last() -> dt.datetime | None:
    value = cache.get(HEARTBEAT_CACHE_KEY)
    return dt.datetime.fromisoformat(value) if value else None


def database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def broker_check() -> None:
    from etl_monitor.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)


READINESS_CHECKS = {"database": database_check, "broker": broker_check}


def readiness_report() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, str] = {}
    ready = True
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named below
            ready = False
            # The exception class is enough to act on; messages may carry URLs with credentials.
            checks[name] = f"unavailable ({type(exc).__name__})"
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
        else:
            checks[name] = "ok"
    try:
        last = heartbeat_last()
    except Exception:  # noqa: BLE001 - the cache is informational here; its outage must not hide the report
        last = None
    report: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
    report["worker_heartbeat"] = last.isoformat() if last else None
    return ready, report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    ready, report = readiness_report()
    return JsonResponse(report, status=200 if ready else 503)
