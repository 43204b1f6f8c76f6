"""Loader tasks: thin wrappers around services, safe to retry."""

from celery import shared_task

from loaders.importing import import_job_run, import_jobs_cleanup


@shared_task(name="loaders.tasks.loader_import_run", acks_late=True)
def loader_import_run(job_id: str) -> None:
    """Run a queued loader import (a finished or running job is left alone)."""
    import_job_run(job_id=job_id)


@shared_task(name="loaders.tasks.loader_import_cleanup")
def loader_import_cleanup() -> int:
    """Drop stored rows of unconfirmed previews older than a day."""
    return import_jobs_cleanup()
