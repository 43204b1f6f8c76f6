"""Loader tasks: thin wrappers around services, safe to retry."""

from celery import shared_task

from loaders.importing import import_job_run


@shared_task(name="loaders.tasks.loader_import_run", acks_late=True)
def loader_import_run(job_id: str) -> None:
    """Run a queued loader import (a finished or running job is left alone)."""
    import_job_run(job_id=job_id)
