"""Loader tasks: thin wrappers around services, safe to retry."""

from celery import shared_task

from loaders.exporting import export_job_run, export_jobs_cleanup
from loaders.importing import import_job_run, import_jobs_cleanup


@shared_task(name="loaders.tasks.loader_import_run", acks_late=True)
def loader_import_run(job_id: str) -> None:
    """Run a queued loader import (a finished or running job is left alone)."""
    import_job_run(job_id=job_id)


@shared_task(name="loaders.tasks.loader_export_run", acks_late=True)
def loader_export_run(job_id: str) -> None:
    """Write the file of a queued loader export (a finished job is left alone)."""
    export_job_run(job_id=job_id)


@shared_task(name="loaders.tasks.loader_import_cleanup")
def loader_import_cleanup() -> int:
    """Drop stored rows of unconfirmed previews older than a day, and export files past their
    retention (LOADER_EXPORT_KEEP_HOURS); returns how many jobs lost their stored content."""
    return import_jobs_cleanup() + export_jobs_cleanup()
