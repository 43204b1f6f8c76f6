"""Signal retention (``SIGNAL_RETENTION_DAYS``) and, on PostgreSQL, the daily partitions it relies on.

On PostgreSQL the signals table is partitioned by day of ``captured_at``: the
daily task drops the partitions wholly older than the limit (a catalog change,
whatever their size) and deletes the few older rows left in the partition that
straddles the limit and in the DEFAULT partition (backfilled data). Elsewhere
(SQLite) old rows are simply deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from signals_app.models import Signal, SignalKey

logger = logging.getLogger(__name__)

TABLE = Signal._meta.db_table
PARTITION_RE = re.compile(rf"^{TABLE}_p(\d{{8}})$")


def _partition_name(day: dt.date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def signal_partitions() -> list[str]:
    """Names of the day partitions that exist (PostgreSQL), oldest first."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname",
            [TABLE],
        )
        return [row[0] for row in cursor.fetchall() if PARTITION_RE.match(row[0])]


def signals_partitions_ensure(*, today: dt.date | None = None, days_before: int = 0, days_ahead: int = 7) -> list[str]:
    """Create the day partitions from ``today - days_before`` to ``today + days_ahead`` (PostgreSQL).

    A day whose rows already landed in the DEFAULT partition (the task did not
    run for a while) cannot get its own partition; it is skipped and its rows
    stay in DEFAULT, which retention still cleans. Returns the partitions created.
    """
    if connection.vendor != "postgresql":
        return []
    today = today or timezone.now().date()
    existing = set(signal_partitions())
    created = []
    for offset in range(-days_before, days_ahead + 1):
        day = today + dt.timedelta(days=offset)
        name = _partition_name(day)
        if name in existing:
            continue
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f'CREATE TABLE "{name}" PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)', [start, end])
        except Exception as exc:  # noqa: BLE001 - one day that cannot be split off must not stop the others
            logger.warning("signal partition %s not created: %s", name, type(exc).__name__)
            continue
        created.append(name)
    return created


def signals_retention_enforce(*, now: dt.datetime | None = None, days: int | None = None) -> dict[str, int]:
    """Remove signals (and idempotency keys) captured before ``now - days``; return what was removed."""
    now = now or timezone.now()
    days = settings.SIGNAL_RETENTION_DAYS if days is None else days
    cutoff = now - dt.timedelta(days=days)
    dropped = 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks of rows written earlier in this transaction would
            # block DROP TABLE; run them now (no-op in the usual separate task transaction).
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for name in signal_partitions():
            day = dt.datetime.strptime(PARTITION_RE.match(name).group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
            if day + dt.timedelta(days=1) <= cutoff:
                with connection.cursor() as cursor:
                    cursor.execute(f'DROP TABLE "{name}"')
                dropped += 1
        # Only the partition straddling the cutoff and DEFAULT hold older rows now; the
        # partition key in the WHERE clause lets PostgreSQL look only there.
        deleted = Signal.objects.filter(captured_at__lt=cutoff)._raw_delete(Signal.objects.db)
        keys = SignalKey.objects.filter(created_at__lt=cutoff)._raw_delete(SignalKey.objects.db)
    logger.info("signal retention: %s partitions dropped, %s rows and %s keys deleted", dropped, deleted, keys)
    return {"partitions_dropped": dropped, "rows_deleted": deleted, "keys_deleted": keys}
