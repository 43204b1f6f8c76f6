"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

import logging
import os

from celery import Celery
from celery.signals import (
    beat_init,
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "etl_monitor.settings")

app = Celery("etl_monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


logger = logging.getLogger(__name__)


@worker_init.connect
@beat_init.connect
def _refuse_insecure_settings(**kwargs: object) -> None:
    """A worker or scheduler never runs on development defaults with DEBUG off, nor with field keys
    that cannot read the database (etl_monitor.checks.platform_refuse_to_start).

    Celery logs and swallows any Exception a signal receiver raises, then starts anyway; SystemExit is
    not an Exception, so it ends the process: status 1, the message on stderr."""
    from django.core.exceptions import ImproperlyConfigured

    from etl_monitor.checks import platform_refuse_to_start

    try:
        platform_refuse_to_start()
    except ImproperlyConfigured as exc:
        logger.critical("Refusing to start: %s", exc)
        raise SystemExit(f"Refusing to start: {exc}") from exc


@celeryd_init.connect
def _worker_metrics_prepare(**kwargs: object) -> None:
    """The worker's metrics directory, emptied and in use before the pool forks (WORKER_METRICS_PORT;
    etl_monitor.worker_metrics says why). A directory shared with the web would spoil both
    endpoints' counts: the worker refuses to start, as for insecure settings."""
    from django.core.exceptions import ImproperlyConfigured

    from etl_monitor.worker_metrics import worker_metrics_prepare

    try:
        worker_metrics_prepare()
    except ImproperlyConfigured as exc:
        logger.critical("Refusing to start: %s", exc)
        raise SystemExit(f"Refusing to start: {exc}") from exc


@worker_ready.connect
def _worker_metrics_serve(**kwargs: object) -> None:
    # Served once the worker is ready (its pool up). A port in use is logged and the worker goes
    # on: notifications matter more than their metrics.
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from etl_monitor.worker_metrics import worker_metrics_serve

        try:
            worker_metrics_serve()
        except OSError:
            logger.exception("worker metrics endpoint not started on port %s", settings.WORKER_METRICS_PORT)


@worker_process_shutdown.connect
def _worker_child_exited(pid: int, **kwargs: object) -> None:
    from etl_monitor.worker_metrics import worker_child_exited

    worker_child_exited(pid)


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    # Imported late: the schedule module imports task names only, but keeping
    # it here makes the one place where periodic work is declared obvious.
    from etl_monitor.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE


@task_prerun.connect
def _log_context_enter(task_id: str | None = None, **kwargs: object) -> None:
    """A task's log lines carry its id as their request id (etl_monitor.log_filters)."""
    from etl_monitor.log_filters import REQUEST_ID

    REQUEST_ID.set(f"task-{task_id}")


@task_postrun.connect
def _log_context_leave(**kwargs: object) -> None:
    from etl_monitor.log_filters import REQUEST_ID

    REQUEST_ID.set("-")
