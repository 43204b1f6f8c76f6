"""Data sources: the external systems detection rules and captures query, and their clients.

A source is a ``DataSource`` row, or — for the names ``prometheus`` and ``elasticsearch`` when no
row exists — the default built from ``PROMETHEUS_URL`` / ``ELASTICSEARCH_URL``. Every call records
the source's health (last success, last error) and turns any failure (unreachable, timeout,
refused, an answer that is not what the API documents) into ``SourceUnavailable``: the engine
reports it as one deduplicated incident and goes on with the other rules.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from etl_monitor.metrics import Outcome, TargetService, http_client_call, outcome_of_status
from etl_monitor.protection import scrub
from incidents.kinds import SourceNotConfigured, SourceUnavailable, source_failed, source_known_down
from integrations.models import DataSource, SourceAuth, SourceKind

logger = logging.getLogger(__name__)

DEFAULTS = {
    "prometheus": (SourceKind.PROMETHEUS, "PROMETHEUS_URL"),
    "elasticsearch": (SourceKind.ELASTICSEARCH, "ELASTICSEARCH_URL"),
}


def source_get(name: str, kind: str) -> DataSource:
    """The enabled source called ``name`` of ``kind``; SourceUnavailable says why there is none."""
    source = DataSource.objects.filter(name=name).first()
    if source is None and name in DEFAULTS and DEFAULTS[name][0] == kind:
        url = getattr(settings, DEFAULTS[name][1])
        if url:
            source = DataSource(name=name, kind=kind, url=url)  # from the environment, not saved
    if source is None:
        raise SourceNotConfigured(
            name, f"no data source {name!r} (add it in the admin, or set {DEFAULTS.get(name, ('', 'its URL'))[1]})"
        )
    if source.kind != kind:
        raise SourceUnavailable(
            name, f"data source {name!r} is {source.get_kind_display()}, not {SourceKind(kind).label}"
        )
    if not source.enabled:
        raise SourceNotConfigured(name, f"data source {name!r} is disabled")
    return source


def health_record(source: DataSource, error: str = "") -> None:
    """Remember how the last call went (only for saved sources)."""
    if source.pk is None:
        return
    now = timezone.now()
    if error:
        DataSource.objects.filter(pk=source.pk).update(last_error=scrub(error)[:1000], last_error_at=now)
    else:
        # Every rule and capture asks: the success is written at most once a minute (or at once
        # after an error), so a cycle of rules does not queue on one row.
        stale = Q(last_success_at__isnull=True) | Q(last_success_at__lt=now - dt.timedelta(seconds=60))
        recovered = Q(last_error_at__isnull=False, last_error_at__gte=F("last_success_at"))
        DataSource.objects.filter(stale | recovered, pk=source.pk).update(last_success_at=now)


def _reason(exc: BaseException) -> str:
    """What went wrong, for people: Elasticsearch's own error type and reason when it sent one
    (``AuthorizationException (403): security_exception: action … is unauthorized``)."""
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", "?")
        text = f"{type(exc).__name__} ({status}): {error.get('type', '?')}: {error.get('reason', '')}"
    else:
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__
        if cause is not None and str(cause) not in text:  # "Connection error" alone does not say why
            text += f" ({type(cause).__name__}: {cause})"
    return scrub(text)[:300]


def es_client(source: DataSource) -> Any:
    """The official Elasticsearch 8 client for the source (no retries: the next evaluation is the retry)."""
    from elasticsearch import Elasticsearch

    auth: dict[str, Any] = {}
    if source.auth == SourceAuth.BASIC:
        auth["basic_auth"] = (source.username, source.secret)
    elif source.auth == SourceAuth.BEARER:
        auth["bearer_auth"] = source.secret
    elif source.auth == SourceAuth.API_KEY:
        auth["api_key"] = source.secret
    return Elasticsearch(
        source.url,
        verify_certs=source.verify_tls,
        request_timeout=source.timeout_seconds,
        max_retries=0,
        retry_on_timeout=False,
        **auth,
    )


TARGET_SERVICES = {
    SourceKind.PROMETHEUS: TargetService.PROMETHEUS,
    SourceKind.ELASTICSEARCH: TargetService.ELASTICSEARCH,
}
_PROM_STATUS_RE = re.compile(r"^HTTP Status Code (\d{3}) ")


def _source_outcome(exc: BaseException) -> Outcome | None:
    """prometheus-api-client keeps the status of a refused query only in its message
    (``HTTP Status Code 503 (b'...')``); the others carry it as an attribute (None: look there)."""
    from prometheus_api_client import PrometheusApiClientException

    if isinstance(exc, PrometheusApiClientException) and (match := _PROM_STATUS_RE.match(str(exc))):
        return outcome_of_status(int(match.group(1)))
    return None


def _ask(source: DataSource, call: Callable[[], Any]) -> Any:
    """``call()`` against the source, its health recorded and its duration measured (by the
    source's kind, never its name or URL). Any failure is SourceUnavailable, and within a detection
    or capture cycle the source is then not asked again (its timeout is paid once, not once per rule)."""
    source_known_down(source.name)
    try:
        with http_client_call(TARGET_SERVICES[SourceKind(source.kind)], classify=_source_outcome):
            result = call()
    except Exception as exc:  # every failure of the source is reported, never raised on
        reason = _reason(exc)
        health_record(source, reason)
        source_failed(source.name, reason)
        raise SourceUnavailable(source.name, reason) from exc
    health_record(source)
    return result


def es_search(source: DataSource, index: str, body: dict[str, Any]) -> dict[str, Any]:
    """One search; any failure, or an answer without ``hits``, is SourceUnavailable."""

    def search() -> dict[str, Any]:
        answer = es_client(source).search(index=index, **body)
        result = answer.body if hasattr(answer, "body") else answer
        if not isinstance(result, dict) or "hits" not in result:
            raise ValueError("the answer has no hits")
        return result

    return _ask(source, search)


def _prom_client(source: DataSource) -> Any:
    """prometheus-api-client for the source (no retries: the next evaluation is the retry)."""
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    headers = {"Authorization": f"Bearer {source.secret}"} if source.auth == SourceAuth.BEARER else None
    auth = (source.username, source.secret) if source.auth == SourceAuth.BASIC else None
    return PrometheusConnect(
        url=source.url.rstrip("/"),
        headers=headers,
        auth=auth,
        disable_ssl=not source.verify_tls,
        retry=Retry(total=0),
        timeout=source.timeout_seconds,
    )


def _prom_call(source: DataSource, call: Any, valid: Any, shape: str) -> list[dict[str, Any]]:
    """Run ``call(client)``; any failure, or an answer ``valid`` refuses, is SourceUnavailable."""

    def query() -> list[dict[str, Any]]:
        result = call(_prom_client(source))
        if not isinstance(result, list) or not all(isinstance(s, dict) and "metric" in s and valid(s) for s in result):
            raise ValueError(f"the answer is not {shape}")
        return result

    return _ask(source, query)


def prom_query(source: DataSource, query: str, at: float) -> list[dict[str, Any]]:
    """An instant query through prometheus-api-client: the result vector (each series' labels and
    value). Any failure, or an answer that is not an instant vector, is SourceUnavailable."""
    return _prom_call(
        source,
        lambda client: client.custom_query(query, params={"time": at}),
        lambda series: "value" in series,
        "an instant vector (a range or scalar query?)",
    )


def prom_query_range(
    source: DataSource, query: str, start: dt.datetime, end: dt.datetime, step_seconds: int
) -> list[dict[str, Any]]:
    """A range query: each series' labels and its samples (``values``: [[time, "value"], …])
    from ``start`` to ``end`` every ``step_seconds``."""
    return _prom_call(
        source,
        lambda client: client.custom_query_range(query, start_time=start, end_time=end, step=f"{step_seconds}s"),
        lambda series: isinstance(series.get("values"), list),
        "a range vector (a scalar query?)",
    )


def source_check(source: DataSource) -> tuple[bool, str]:
    """The "test connection" of a source: whether it answers as its kind should, and what it said."""
    try:
        if source.kind == SourceKind.ELASTICSEARCH:
            # The server, then the log index the rules and captures search (_count: can we read it?).
            client = es_client(source)
            index = settings.ELASTICSEARCH_INDEX
            with http_client_call(TargetService.ELASTICSEARCH):
                info = client.info()
                counted = client.count(index=index)
            body = info.body if hasattr(info, "body") else info
            count = (counted.body if hasattr(counted, "body") else counted)["count"]
            detail = (
                f"Elasticsearch {body['version']['number']} (cluster {body.get('cluster_name', '?')}); "
                f"{index}: {count:,} documents"
            )
        else:
            result = prom_query(source, "vector(1)", timezone.now().timestamp())
            if [float(s["value"][1]) for s in result] != [1.0]:
                raise ValueError(f"unexpected answer to vector(1): {result!r}")
            detail = "Prometheus answers queries"
    except SourceUnavailable as exc:
        return False, exc.reason
    except Exception as exc:  # noqa: BLE001 — any failure is the answer of the check
        reason = _reason(exc)
        health_record(source, reason)
        return False, reason
    health_record(source)
    return True, detail
