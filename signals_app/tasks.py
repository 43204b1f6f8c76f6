"""Signal maintenance tasks (thin wrappers; see signals_app.retention)."""

from celery import shared_task

from signals_app.retention import signals_partitions_ensure, signals_retention_enforce


@shared_task(name="signals_app.tasks.signals_maintenance")
def signals_maintenance() -> dict:
    """Create the coming days' partitions, then enforce SIGNAL_RETENTION_DAYS. Idempotent."""
    created = signals_partitions_ensure()
    removed = signals_retention_enforce()
    return {"partitions_created": len(created), **removed}
