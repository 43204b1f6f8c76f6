"""Platform-level tasks (thin wrappers; the work lives in ``etl_monitor.health``)."""

from celery import shared_task

from etl_monitor.health import heartbeat_record


@shared_task(name="etl_monitor.tasks.platform_heartbeat", ignore_result=True)
def platform_heartbeat() -> str:
    """Record that a worker executed a scheduled task just now."""
    return heartbeat_record().isoformat()
