"""Exports of loaders to a spreadsheet: at once for a few, as a background job for many.

Whichever way, the file is written by ``importing.loaders_export``, so a job's file is the
same as an immediate one: the requester's field protection applied, ``connection_password``
never included, formula-like cells neutralised. What is enforced here and nowhere else:

- who may export: the *view loader* permission, checked when the export is asked for and
  again when the job runs (a role taken away in between fails the job, saying why);
- who may read a job and download its file: its requester, and Admins (``export_jobs_visible``);
- how long the file is kept: LOADER_EXPORT_KEEP_HOURS after it was written
  (``export_jobs_cleanup``, run by the hourly ``loaders.tasks.loader_import_cleanup``).

A job is sized when it is asked for: the loaders chosen then (the selection, or the list's
filter as it was) are the ones exported, in code order, whatever is added later.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from etl_monitor.errors import ServiceError
from etl_monitor.outage import cache_call, task_publish
from etl_monitor.permissions import permission_require
from loaders import importing, selectors
from loaders.models import ExportJob, Loader

logger = logging.getLogger(__name__)

# Loaders read per query (with their tags and versions); progress moves by this step too.
CHUNK = 1000
EXPORT_FAILED = "The export failed unexpectedly; start it again, or ask an administrator to look at the logs."
QUEUE_UNAVAILABLE = "The background queue (Redis) was unavailable, so this export did not start. Start it again."


def loaders_export_now(*, user: AbstractBaseUser, loaders: QuerySet[Loader], file_format: str) -> bytes:
    """The file of ``loaders`` (any queryset of them), written while the caller waits."""
    # The list selector's versions are lean (a few columns): the export needs every contract field.
    chosen = selectors.loader_detail_list().filter(pk__in=loaders.values("pk")).order_by("loader_code")
    return importing.loaders_export(user=user, loaders=chosen.iterator(chunk_size=CHUNK), file_format=file_format)


def export_job_create(*, user: AbstractBaseUser, loaders: QuerySet[Loader], file_format: str) -> ExportJob:
    """Queue an export of ``loaders`` for the worker (``loaders.tasks.loader_export_run``)."""
    permission_require(user, "loaders.view_loader", "export loaders")
    if file_format not in ExportJob.Format.values:
        raise ValueError(f"Unknown export format {file_format!r}.")
    ids = list(loaders.order_by("loader_code").values_list("pk", flat=True))
    job = ExportJob.objects.create(created_by=user, file_format=file_format, loader_ids=ids, rows_total=len(ids))
    transaction.on_commit(lambda: _export_job_enqueue(job.pk))
    return job


def _export_job_enqueue(job_id: Any) -> None:
    # No sweep picks up a job that was never queued: with the broker away it fails at once, saying so.
    from loaders.tasks import loader_export_run

    if not task_publish(loader_export_run, (str(job_id),)):
        _job_finish(ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.QUEUED), error=QUEUE_UNAVAILABLE)


def _job_finish(jobs: QuerySet[ExportJob], *, content: bytes = b"", error: str = "") -> None:
    status = ExportJob.Status.FAILED if error else ExportJob.Status.DONE
    jobs.update(status=status, content=content, error=error, loader_ids=[], finished_at=timezone.now())


def export_job_run(*, job_id: Any) -> None:
    """Write the file of a queued job (the Celery task calls this). Safe to deliver twice or to retry.

    The job row stays locked while the file is written, so a duplicate delivery waits and then
    finds the job finished; a worker killed mid-run leaves it RUNNING and the redelivered task
    writes the file again.
    """
    ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.QUEUED).update(status=ExportJob.Status.RUNNING)
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().select_related("created_by").get(pk=job_id)
        if job.status != ExportJob.Status.RUNNING:
            return
        content, error = b"", ""
        try:
            with transaction.atomic():  # a database error rolls back to here, and the job can still be marked
                content = importing.loaders_export(
                    user=job.created_by, loaders=_loaders_counted(job), file_format=job.file_format
                )
        except ServiceError as exc:
            error = exc.message
        except Exception:
            logger.exception("loader export %s failed", job.pk)
            error = EXPORT_FAILED
        _job_finish(ExportJob.objects.filter(pk=job.pk), content=content, error=error)


def _progress_key(job_id: Any) -> str:
    return f"loader-export:{job_id}:progress"


def _loaders_counted(job: ExportJob) -> Iterator[Loader]:
    """The job's loaders in code order, a chunk per query, counting progress in the cache."""
    ids: Sequence[int] = job.loader_ids
    for start in range(0, len(ids), CHUNK):
        yield from selectors.loader_detail_list().filter(pk__in=ids[start : start + CHUNK]).order_by("loader_code")
        done = min(start + CHUNK, len(ids))
        cache_call(lambda done=done: cache.set(_progress_key(job.pk), done, timeout=3600))


def export_job_progress(job: ExportJob) -> tuple[int, int]:
    """(loaders read, loaders chosen). Kept in the cache: while the cache is away it reads 0, not a 500."""
    if job.status in (ExportJob.Status.DONE, ExportJob.Status.FAILED):
        return job.rows_total, job.rows_total
    return cache_call(lambda: cache.get(_progress_key(job.pk))) or 0, job.rows_total


def export_jobs_visible(*, user: AbstractBaseUser) -> QuerySet[ExportJob]:
    """The jobs ``user`` may see and download: their own; every job for Admins."""
    if user.has_perm("loaders.delete_exportjob"):
        return ExportJob.objects.all()
    return ExportJob.objects.filter(created_by_id=user.pk)


def export_jobs_cleanup(*, older_than: dt.timedelta | None = None) -> int:
    """Drop the files of exports written more than LOADER_EXPORT_KEEP_HOURS ago; keep the rows."""
    if older_than is None:
        older_than = dt.timedelta(hours=settings.LOADER_EXPORT_KEEP_HOURS)
    cutoff = timezone.now() - older_than
    return ExportJob.objects.filter(finished_at__lt=cutoff).exclude(content=b"").update(content=b"")
