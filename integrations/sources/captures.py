"""Statistics capture: observability metrics stored as signals (the roadmap's section 1.5).

Every ``CAPTURE_BUCKET_SECONDS`` (5 minutes) each enabled ``Capture`` queries its data source for
the bucket that just ended and stores one signal per key (a service, a pod) on its loader, with
``metric_source`` set. Each signal is keyed by (capture, bucket, key): capturing a bucket again
stores nothing twice. A source that is down fires its one "data source unreachable" incident; a
source that is not configured yet is skipped quietly (the integration is off).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from etl_monitor.protection import scrub
from incidents.detection import source_unreachable, sources_reachable
from incidents.kinds import SourceKnownDown, SourceNotConfigured, SourceUnavailable, source_cycle
from integrations.models import Capture, DataSource, SourceKind
from integrations.sources.clients import es_search, prom_query, source_get
from signals_app.models import MetricSource
from signals_app.services import signals_capture

logger = logging.getLogger(__name__)

METRIC_SOURCE = {SourceKind.PROMETHEUS: MetricSource.PROMETHEUS, SourceKind.ELASTICSEARCH: MetricSource.ELASTICSEARCH}
ES_MAX_KEYS = 10_000  # terms buckets per capture (Elasticsearch's default search.max_buckets is 65,536)


@dataclass
class CaptureResult:
    capture: str
    bucket: dt.datetime
    status: str = "stored"  # stored | skipped | failed
    found: int = 0  # values the source answered
    stored: int = 0  # signals newly stored (0 when the bucket was captured before)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    def summary(self) -> str:
        if self.status != "stored":
            return f"{self.status}: {self.error}"
        text = f"{self.stored} of {self.found} values stored for the bucket ending {self.bucket:%H:%M} UTC"
        return "; ".join([text, *self.notes])


def bucket_end(now: dt.datetime) -> dt.datetime:
    """The end of the last complete bucket at ``now`` (buckets are aligned on the epoch)."""
    size = settings.CAPTURE_BUCKET_SECONDS
    return dt.datetime.fromtimestamp(now.timestamp() // size * size, tz=dt.UTC)


def _prometheus_values(capture: Capture, source: DataSource, end: dt.datetime) -> tuple[list[Any], list[str]]:
    values, missing, not_numbers = [], 0, 0
    labels_wanted = capture.key_labels
    for series in prom_query(source, capture.query, end.timestamp()):
        labels = series["metric"]
        if not all(label in labels for label in labels_wanted):
            missing += 1
            continue
        try:
            value = float(series["value"][1])
        except (TypeError, ValueError, IndexError):
            not_numbers += 1
            continue
        if not math.isfinite(value):  # e.g. histogram_quantile over a bucket without requests
            not_numbers += 1
            continue
        values.append(("/".join(str(labels[label]) for label in labels_wanted), value))
    notes = []
    if missing:
        notes.append(f"{missing} series without the label {capture.key_label!r} skipped")
    if not_numbers:
        notes.append(f"{not_numbers} series without a finite value (NaN, Inf) skipped")
    return values, notes


def _elasticsearch_values(
    capture: Capture, source: DataSource, start: dt.datetime, end: dt.datetime
) -> tuple[list[Any], list[str]]:
    filters: list[dict[str, Any]] = [{"range": {capture.time_field: {"gte": start.isoformat(), "lt": end.isoformat()}}}]
    if capture.query.strip():
        filters.append({"query_string": {"query": capture.query}})
    body = {
        "size": 0,
        "query": {"bool": {"filter": filters}},
        "aggs": {"keys": {"terms": {"field": capture.key_labels[0], "size": ES_MAX_KEYS}}},
    }
    answer = es_search(source, capture.index or settings.ELASTICSEARCH_INDEX, body)
    try:
        aggregation = answer["aggregations"]["keys"]
        values = [(str(b["key"]), float(b["doc_count"])) for b in aggregation["buckets"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceUnavailable(
            source.name, f"unexpected answer from Elasticsearch ({type(exc).__name__}: {exc})"
        ) from exc
    notes = []
    if aggregation.get("sum_other_doc_count"):
        notes.append(f"more than {ES_MAX_KEYS} keys: {aggregation['sum_other_doc_count']} lines in the rest not stored")
    return values, notes


def capture_run(capture: Capture, *, now: dt.datetime | None = None) -> CaptureResult:
    """Capture the bucket that ended last at ``now``; a rerun of the same bucket stores nothing."""
    end = bucket_end(now or timezone.now())
    result = CaptureResult(capture.name, end)
    try:
        _capture(capture, end, result)
    except SourceNotConfigured as exc:
        result.status, result.error = "skipped", exc.reason
    except SourceUnavailable as exc:
        result.status, result.error = "failed", f"source unavailable: {exc.reason}"
        if not isinstance(exc, SourceKnownDown):  # fired once per run, by the capture that found it
            source_unreachable(exc.source, exc.reason, timezone.now(), category="INFRASTRUCTURE")
    except Exception as exc:
        logger.exception("statistics capture %s failed", capture.name)
        result.status, result.error = "failed", scrub(f"{type(exc).__name__}: {exc}")[:300]
    Capture.objects.filter(pk=capture.pk).update(
        last_run_at=timezone.now(),
        last_bucket_at=end if result.status == "stored" else capture.last_bucket_at,
        last_stored=result.stored if result.status == "stored" else capture.last_stored,
        last_error="" if result.status == "stored" else result.error,
    )
    return result


def _capture(capture: Capture, end: dt.datetime, result: CaptureResult) -> None:
    if capture.loader.is_paused:
        raise SourceNotConfigured(capture.source, f"loader {capture.loader.loader_code} is paused")
    source = source_get(capture.source, capture.source_kind)
    start = end - dt.timedelta(seconds=settings.CAPTURE_BUCKET_SECONDS)
    if capture.source_kind == SourceKind.PROMETHEUS:
        values, result.notes = _prometheus_values(capture, source, end)
    else:
        values, result.notes = _elasticsearch_values(capture, source, start, end)
    sources_reachable({source.name}, timezone.now())
    prefix = capture.key_prefix
    unique: dict[str, float] = {}
    for key, value in values:
        unique.setdefault(prefix + key, value)
    if len(unique) < len(values):
        result.notes.append(f"{len(values) - len(unique)} series shared a key with another (the first kept)")
    result.found = len(unique)
    result.stored = signals_capture(
        loader=capture.loader,
        values=list(unique.items()),
        metric_type=capture.metric_type,
        metric_source=METRIC_SOURCE[capture.source_kind],
        captured_at=end,
        idempotency_prefix=f"capture:{capture.pk}:{end:%Y%m%dT%H%M%S}:",
        attributes={"capture": capture.name},
    )


def captures_run(*, now: dt.datetime | None = None, names: list[str] | None = None) -> list[CaptureResult]:
    """Run every enabled capture (or those named) for the bucket that ended last."""
    now = now or timezone.now()
    captures = Capture.objects.filter(enabled=True).select_related("loader")
    if names is not None:
        captures = Capture.objects.filter(name__in=names).select_related("loader")
    with source_cycle():  # a source that fails is asked once per run, not once per capture
        return [capture_run(capture, now=now) for capture in captures]
