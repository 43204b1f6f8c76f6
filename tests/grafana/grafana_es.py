"""What Grafana's Elasticsearch data source sends for a panel target or a variable, so the proofs
send the same: its backend (pkg/tsdb/elasticsearch) turns a saved target into one ``_msearch``
line pair, and its template service formats variables for Lucene.

- Every query: ``size: 0`` and ``query.bool.filter`` = the time range (epoch milliseconds) and,
  if the Lucene text is not blank, a ``query_string`` with ``analyze_wildcard``.
- Bucket aggregations nest in the order saved (each inside the previous), keyed by their ``id``;
  ``terms`` gets ``size``, ``min_doc_count`` and ``order`` (``_count`` for the count metric);
  ``date_histogram`` gets ``fixed_interval`` (the panel's interval for ``auto``),
  ``min_doc_count``, ``extended_bounds`` = the time range, ``format: epoch_millis``.
- Metrics other than ``count`` become metric aggregations in the innermost bucket.
- ``raw_data``: no aggregations; ``size`` from its settings (500 by default), sorted by the time
  field descending then ``_doc``, with the time field as a doc-value field.
- A variable's ``{"find": "terms", ...}``: a ``terms`` aggregation ``"1"`` (size 500, ``_key``
  ascending) under the same time range and its own query.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.grafana.dashboards import interpolate

DEFAULT_SIZE = 500
ALL = "$__all"


def lucene_escape(value: str) -> str:
    """Grafana's ``luceneEscape``."""
    return re.sub(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])', r"\\\1", value)


def lucene_format(value: str | list[str]) -> str:
    """Grafana's ``lucene`` variable format: one value escaped, several as ``("a" OR "b")``."""
    if isinstance(value, str):
        return lucene_escape(value)
    if not value:
        return "__empty__"
    return "(" + " OR ".join(f'"{lucene_escape(v)}"' for v in value) + ")"


def lucene_variables(dashboard: dict[str, Any], chosen: dict[str, str | list[str]] | None = None) -> dict[str, str]:
    """Each variable's text in a Lucene query: ``chosen`` values (``ALL`` for "All") or the
    defaults. "All" with an ``allValue`` is that value verbatim, as Grafana does (unescaped)."""
    chosen = chosen or {}
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        value = chosen.get(name, ALL if variable.get("includeAll") else variable.get("current", {}).get("value", ""))
        if value == ALL and variable.get("allValue"):
            values[name] = variable["allValue"]
        elif value == ALL:
            raise ValueError(f"{name}: All without an allValue expands to every value; choose them")
        else:
            values[name] = lucene_format(value)
    return values


def _time_filter(time_field: str, start_ms: int, end_ms: int, query: str) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [
        {"range": {time_field: {"gte": start_ms, "lte": end_ms, "format": "epoch_millis"}}}
    ]
    if query.strip():
        filters.append({"query_string": {"analyze_wildcard": True, "query": query}})
    return filters


def _int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number or default


def _bucket_agg(
    bucket: dict[str, Any], metrics: list[dict[str, Any]], span: tuple[int, int], interval_ms: int, time_field: str
) -> dict[str, Any]:
    settings = bucket.get("settings", {})
    if bucket["type"] == "date_histogram":
        interval = settings.get("interval", "auto")
        return {
            "date_histogram": {
                "field": bucket.get("field") or time_field,
                "fixed_interval": f"{interval_ms}ms" if interval == "auto" else interval,
                "min_doc_count": _int(settings.get("min_doc_count"), 0),
                "extended_bounds": {"min": span[0], "max": span[1]},
                "format": settings.get("format", "epoch_millis"),
            }
        }
    if bucket["type"] == "terms":
        terms: dict[str, Any] = {"field": bucket["field"], "size": _int(settings.get("size"), DEFAULT_SIZE)}
        if "min_doc_count" in settings:
            terms["min_doc_count"] = int(settings["min_doc_count"])
        order_by, order = settings.get("orderBy"), settings.get("order", "desc")
        if order_by:
            metric = next((m for m in metrics if re.match(r"^\d+", order_by) and m["id"] == order_by), None)
            if metric is not None and metric["type"] == "count":
                terms["order"] = {"_count": order}
            else:
                terms["order"] = {order_by: order}
        return {"terms": terms}
    raise NotImplementedError(f"bucket aggregation {bucket['type']!r}: teach tests/grafana/grafana_es.py")


def search_body(
    target: dict[str, Any], variables: dict[str, str], start_ms: int, end_ms: int, interval_ms: int = 60_000
) -> dict[str, Any]:
    """The search body Grafana sends for ``target`` over [start_ms, end_ms]."""
    time_field = target.get("timeField") or "@timestamp"
    query = interpolate(target.get("query") or "", variables)
    body: dict[str, Any] = {"size": 0, "query": {"bool": {"filter": _time_filter(time_field, start_ms, end_ms, query)}}}
    metrics = target.get("metrics") or [{"id": "1", "type": "count"}]
    if metrics[0]["type"] in ("raw_data", "raw_document"):
        body["size"] = _int(metrics[0].get("settings", {}).get("size"), DEFAULT_SIZE)
        body["sort"] = [
            {time_field: {"order": "desc", "unmapped_type": "boolean"}},
            {"_doc": {"order": "desc"}},
        ]
        body["docvalue_fields"] = [time_field]
        return body
    if metrics[0]["type"] == "logs":
        raise NotImplementedError("logs queries: teach tests/grafana/grafana_es.py (sort, highlight, histogram)")
    root: dict[str, Any] = {}
    inner = root
    for bucket in target.get("bucketAggs") or []:
        agg = _bucket_agg(bucket, metrics, (start_ms, end_ms), interval_ms, time_field)
        inner[bucket["id"]] = agg
        agg["aggs"] = {}
        inner = agg["aggs"]
    for metric in metrics:
        if metric["type"] == "count":
            continue
        inner[metric["id"]] = {metric["type"]: {"field": metric["field"], **metric.get("settings", {})}}
    _drop_empty_aggs(root)
    body["aggs"] = root
    return body


def _drop_empty_aggs(aggs: dict[str, Any]) -> None:
    for agg in aggs.values():
        if "aggs" in agg:
            if agg["aggs"]:
                _drop_empty_aggs(agg["aggs"])
            else:
                del agg["aggs"]


def msearch_header(index: str) -> dict[str, Any]:
    return {"search_type": "query_then_fetch", "ignore_unavailable": True, "index": index}


def terms_body(
    variable: dict[str, Any], variables: dict[str, str], start_ms: int, end_ms: int, time_field: str = "@timestamp"
) -> dict[str, Any]:
    """The search a ``{"find": "terms"}`` query variable sends."""
    find = json.loads(variable["query"]) if isinstance(variable["query"], str) else variable["query"]
    if find.get("find") != "terms":
        raise NotImplementedError(f"variable query {find!r}")
    query = interpolate(find.get("query", ""), variables)
    order_by = find.get("orderBy", "key")
    order = find.get("order", "desc" if order_by == "doc_count" else "asc")
    return {
        "size": 0,
        "query": {"bool": {"filter": _time_filter(time_field, start_ms, end_ms, query)}},
        "aggs": {
            "1": {
                "terms": {
                    "field": find["field"],
                    "size": int(find.get("size", DEFAULT_SIZE)),
                    "order": {"_count" if order_by == "doc_count" else "_key": order},
                }
            }
        },
    }


# What Grafana's backend names the columns of a table query's answer (response_parser.go).
METRIC_NAMES = {
    "count": "Count",
    "min": "Min",
    "max": "Max",
    "avg": "Average",
    "sum": "Sum",
    "value_count": "Value Count",
    "cardinality": "Unique Count",
}
DOCUMENT_KEYS = ("_id", "_type", "_index", "sort", "highlight")


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def table_columns(target: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    """The columns Grafana makes of ``answer``: for raw documents the flattened ``_source`` keys
    (dotted) and the hit's ``_id``, ``_type``, ``_index``, ``sort``, ``highlight``; for a table of
    buckets the terms field(s), then one column per metric named by its type ("Count", "Min"),
    with the field appended only when two metrics share a type ("Min @timestamp")."""
    metrics = target.get("metrics") or [{"id": "1", "type": "count"}]
    if metrics[0]["type"] in ("raw_data", "raw_document"):
        keys: dict[str, None] = dict.fromkeys(DOCUMENT_KEYS)
        for hit in answer["hits"]["hits"]:
            keys.update(dict.fromkeys(_flatten(hit["_source"])))
        return list(keys)
    columns = [b["field"] for b in target.get("bucketAggs") or [] if b["type"] == "terms"]
    types = [m["type"] for m in metrics]
    for metric in metrics:
        name = METRIC_NAMES[metric["type"]]
        if metric["type"] != "count" and types.count(metric["type"]) > 1:
            name += " " + metric["field"]
        columns.append(name)
    return columns
