"""Detection rule kinds over external sources (registered with the engine's kind registry)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import quote

from django.conf import settings

from incidents.kinds import Measurement, Param, RuleKind, SourceUnavailable, kind_register
from integrations.models import SourceKind
from integrations.sources.clients import es_search, prom_query, prom_query_range, source_get


def _kibana_link(query: str, since: dt.datetime, now: dt.datetime) -> str:
    if not settings.KIBANA_URL:
        return ""
    window = f"(time:(from:'{since.isoformat()}',to:'{now.isoformat()}'))"
    return f"{settings.KIBANA_URL.rstrip('/')}/app/discover#/?_g={quote(window)}&_a=(query:(query:'{quote(query)}'))"


@kind_register
class EsErrorCount(RuleKind):
    """ERROR-level log lines in the window, from Elasticsearch, overall or per service (a terms
    aggregation on ``service_field``), against the threshold — the roadmap's rule 2 (more than 50
    in 5 minutes → MEDIUM). The incident carries the top error messages and a Kibana link."""

    name = "es_error_count"
    rule_type = "LOG"
    description = "ERROR log lines in the window (Elasticsearch), overall or per service."
    default_threshold = 50.0
    params = {
        "source": Param(str, default="elasticsearch", help="The data source (Elasticsearch)."),
        "index": Param(str, help="Index or pattern; default ELASTICSEARCH_INDEX."),
        "level_field": Param(str, default="level", help="The field holding the log level (e.g. log.level)."),
        "level_value": Param(str, default="ERROR"),
        "time_field": Param(str, default="@timestamp"),
        "service_field": Param(str, default="", help="Count per value of this field (e.g. service.name)."),
        "message_field": Param(str, default="message.keyword", help="A keyword field for the top messages."),
        "top_messages": Param(int, default=3),
    }

    def sources(self, rule: Any) -> list[str]:
        return [rule.params.get("source") or "elasticsearch"]

    def evaluate(self, rule: Any, loaders: Any, now: dt.datetime) -> list[Measurement]:
        p = rule.params
        source = source_get(p.get("source") or "elasticsearch", SourceKind.ELASTICSEARCH)
        since = now - dt.timedelta(seconds=rule.window_seconds)
        level_field, level = p.get("level_field") or "level", p.get("level_value") or "ERROR"
        time_field = p.get("time_field") or "@timestamp"
        top = {"terms": {"field": p.get("message_field") or "message.keyword", "size": p.get("top_messages", 3)}}
        service_field = p.get("service_field") or ""
        aggs: dict[str, Any] = {"top": top}
        if service_field:
            aggs = {"services": {"terms": {"field": service_field, "size": 500}, "aggs": {"top": top}}}
        body = {
            "size": 0,
            "track_total_hits": True,
            "query": {
                "bool": {
                    "filter": [
                        {"range": {time_field: {"gte": since.isoformat(), "lte": now.isoformat()}}},
                        {"term": {level_field: level}},
                    ]
                }
            },
            "aggs": aggs,
        }
        answer = es_search(source, p.get("index") or settings.ELASTICSEARCH_INDEX, body)
        try:
            if service_field:
                return [
                    self._measure(
                        str(bucket["key"]),
                        bucket["doc_count"],
                        bucket["top"]["buckets"],
                        _kibana_link(f'{level_field}:"{level}" AND {service_field}:"{bucket["key"]}"', since, now),
                    )
                    for bucket in answer["aggregations"]["services"]["buckets"]
                ]
            total = answer["hits"]["total"]
            count = total["value"] if isinstance(total, dict) else int(total)
            link = _kibana_link(f'{level_field}:"{level}"', since, now)
            return [self._measure("all services", count, answer["aggregations"]["top"]["buckets"], link)]
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceUnavailable(
                source.name, f"unexpected answer from Elasticsearch ({type(exc).__name__}: {exc})"
            ) from exc

    @staticmethod
    def _measure(subject: str, count: Any, top: list[dict[str, Any]], kibana: str) -> Measurement:
        messages = [f"{b['key']} ({b['doc_count']})" for b in top]
        details: dict[str, Any] = {"top_messages": messages}
        if kibana:
            details["kibana"] = kibana
        return Measurement(subject, float(count), details=details)


@kind_register
class PromqlThreshold(RuleKind):
    """Any PromQL expression, evaluated at the moment of the rule (an instant query); each series
    it returns is its own subject (named by its labels), compared with the threshold — e.g. the
    roadmap's circuit breaker (``resilience4j_circuitbreaker_state{state="open"} == 1`` → CRITICAL
    per service) and memory (``… / … * 100 > 85`` → HIGH per pod). A series that disappears is clear."""

    name = "promql_threshold"
    rule_type = "INFRASTRUCTURE"
    description = "A PromQL expression; one subject per returned series."
    params = {
        "query": Param(str, required=True, help="The PromQL expression (an instant vector)."),
        "source": Param(str, default="prometheus", help="The data source (Prometheus)."),
        "subject_labels": Param(
            str, default="", help="Comma-separated labels naming a series (default: all but __name__)."
        ),
        "aggregation": Param(
            str,
            choices=("avg", "max", "min", "last"),
            help="Unset: the value at the moment of evaluation (an instant query). Set: this aggregation of "
            "each series' samples over the rule's window (a range query), e.g. max over 15 minutes.",
        ),
        "step_seconds": Param(int, help="With aggregation: seconds between samples (default 60)."),
    }

    def check(self, params: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
        step = params.get("step_seconds")
        if step is not None and step < 1:
            errors["params.step_seconds"] = ["Must be at least 1."]
        return params

    def sources(self, rule: Any) -> list[str]:
        return [rule.params.get("source") or "prometheus"]

    def evaluate(self, rule: Any, loaders: Any, now: dt.datetime) -> list[Measurement]:
        p = rule.params
        source = source_get(p.get("source") or "prometheus", SourceKind.PROMETHEUS)
        wanted = [name.strip() for name in (p.get("subject_labels") or "").split(",") if name.strip()]
        aggregation = p.get("aggregation")
        if aggregation:
            step = p.get("step_seconds") or 60
            start = now - dt.timedelta(seconds=rule.window_seconds)
            answer = prom_query_range(source, p["query"], start, now, step)
        else:
            answer = prom_query(source, p["query"], now.timestamp())
        found = []
        for series in answer:
            labels = {k: str(v) for k, v in series["metric"].items()}
            shown = (
                {k: labels[k] for k in wanted if k in labels}
                if wanted
                else {k: v for k, v in labels.items() if k != "__name__"}
            )
            subject = ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", p["query"])
            try:
                if aggregation:
                    samples = [float(v) for _t, v in series["values"]]
                    value = _aggregate(aggregation, samples)
                else:
                    value = float(series["value"][1])
            except (TypeError, ValueError, IndexError) as exc:
                raise SourceUnavailable(
                    source.name, f"unexpected value in the answer: {series.get('value', series.get('values'))!r}"
                ) from exc
            details: dict[str, Any] = {"labels": labels}
            if aggregation:
                details.update(aggregation=aggregation, samples=len(series["values"]))
            found.append(Measurement(subject, value, details=details))
        return found


def _aggregate(aggregation: str, samples: list[float]) -> float | None:
    numbers = [v for v in samples if math.isfinite(v)]
    if not numbers:
        return None
    if aggregation == "avg":
        return sum(numbers) / len(numbers)
    if aggregation == "max":
        return max(numbers)
    if aggregation == "min":
        return min(numbers)
    return numbers[-1]
