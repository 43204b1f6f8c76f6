"""An Elasticsearch 8 stand-in for the log dashboard's proofs: a local HTTP server that answers
``_search`` and ``_msearch`` the way Elasticsearch 8 does (the ``X-Elastic-Product`` header the
real client insists on, the documented answer shapes), by evaluating each request over an
in-memory list of log documents.

It understands what the dashboards use and nothing more: ``query_string`` (parsed with luqum:
``field:value``, wildcards, phrases, ranges, AND/OR/NOT, groups), ``bool``/``range``/``term``/
``terms``/``exists``/``match_all``, the aggregations ``date_histogram``, ``terms``, ``min``,
``max``, ``value_count``, and raw documents with ``size`` and ``sort``. Anything else is refused
with an error shaped like Elasticsearch's (400, ``parsing_exception``), so a panel built on a
feature the double does not evaluate fails loudly instead of passing on a made-up answer.

Fields are mapped as a log index usually is: ``@timestamp`` a date, ``message`` text with a
``message.keyword`` sub-field, the rest keywords. As in Elasticsearch, a ``terms`` aggregation on
a text field is an error (fielddata is disabled), and a text field matches by lower-cased word.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from luqum import tree
from luqum.exceptions import ParseError
from luqum.parser import parser as lucene_parser
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json; compatible-with=8",
}
TIME_FIELD = "@timestamp"
TEXT_FIELDS = {"message"}  # analysed text; each has a ``<name>.keyword`` sub-field
DATE_FIELDS = {TIME_FIELD}
TOTAL_HITS_LIMIT = 10_000  # Elasticsearch's default track_total_hits
SEARCH_KEYS = {
    "query", "aggs", "aggregations", "size", "from", "sort", "track_total_hits", "docvalue_fields",
    "script_fields", "_source", "stored_fields", "highlight",
}  # fmt: skip
METRICS = {"min", "max", "value_count"}


class EsError(Exception):
    """A request Elasticsearch would refuse: answered with its status and error body."""

    def __init__(self, kind: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status

    def body(self) -> dict[str, Any]:
        cause = {"type": self.kind, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def unsupported(what: str) -> EsError:
    return EsError(
        "parsing_exception", f"{what} [the test double does not evaluate it; teach tests/grafana/es_double.py]"
    )


# --- Documents and fields -------------------------------------------------------------------


def field_values(document: dict[str, Any], field: str) -> list[Any]:
    """The values of ``field`` (dotted; nested objects or dotted keys), ``.keyword`` resolved."""
    if field.endswith(".keyword"):
        return [v for v in field_values(document, field.removesuffix(".keyword")) if isinstance(v, str)]
    if field in document:
        value = document[field]
    else:
        head, _, rest = field.partition(".")
        if not rest or not isinstance(document.get(head), dict):
            return []
        return field_values(document[head], rest)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def to_millis(value: Any) -> int:
    """A date as Elasticsearch reads it: epoch milliseconds or ISO 8601."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EsError("parse_exception", f"failed to parse date field [{text}]") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def iso(millis: float) -> str:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def words(text: str) -> list[str]:
    """The standard analyser, roughly: lower-cased runs of letters and digits."""
    return re.findall(r"\w+", text.lower())


# --- query_string (Lucene) ------------------------------------------------------------------


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _term_matches(values: list[Any], field: str, term: str, wildcard: bool) -> bool:
    base = field.removesuffix(".keyword")
    if base in TEXT_FIELDS and not field.endswith(".keyword"):
        tokens = [w for v in values for w in words(str(v))]
        if wildcard:
            return any(fnmatch.fnmatchcase(t, term.lower()) for t in tokens)
        return all(w in tokens for w in words(term)) and bool(words(term))
    if field in DATE_FIELDS:
        return any(to_millis(v) == to_millis(term) for v in values)
    if wildcard:
        return any(fnmatch.fnmatchcase(str(v), term) for v in values)
    return any(str(v) == term for v in values)


def _phrase_matches(values: list[Any], field: str, phrase: str) -> bool:
    if field in TEXT_FIELDS:
        wanted = words(phrase)
        for value in values:
            tokens = words(str(value))
            if any(tokens[i : i + len(wanted)] == wanted for i in range(len(tokens) - len(wanted) + 1)):
                return True
        return False
    return _term_matches(values, field, phrase, wildcard=False)


def _bound(item: tree.Item) -> str | None:
    text = _unescape(str(item.value)) if isinstance(item, tree.Word) else str(item)
    return None if text == "*" else text.strip('"')


def _range_matches(values: list[Any], field: str, node: tree.Range) -> bool:
    low, high = _bound(node.low), _bound(node.high)
    as_key: Callable[[Any], Any]
    if field in DATE_FIELDS:
        as_key = to_millis
    elif all(isinstance(v, int | float) for v in values):
        as_key = float
    else:
        as_key = str
    for value in values:
        key = as_key(value)
        if low is not None and (key < as_key(low) or (not node.include_low and key == as_key(low))):
            continue
        if high is not None and (key > as_key(high) or (not node.include_high and key == as_key(high))):
            continue
        return True
    return False


def _all_fields(document: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in document.items():
        if isinstance(value, dict):
            yield from _all_fields(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def lucene_matches(node: tree.Item, document: dict[str, Any], field: str | None = None) -> bool:
    """Whether ``document`` matches the parsed query ``node`` (default operator OR, as
    Elasticsearch's query_string has it)."""
    if isinstance(node, tree.SearchField):
        return lucene_matches(node.expr, document, node.name)
    if isinstance(node, tree.Group | tree.FieldGroup):
        return lucene_matches(node.expr, document, field)
    if isinstance(node, tree.AndOperation):
        return all(lucene_matches(child, document, field) for child in node.children)
    if isinstance(node, tree.OrOperation):
        return any(lucene_matches(child, document, field) for child in node.children)
    if isinstance(node, tree.UnknownOperation):  # juxtaposition: OR, except for +required / -prohibited
        required = [c for c in node.children if isinstance(c, tree.Plus | tree.Prohibit)]
        optional = [c for c in node.children if c not in required]
        return all(lucene_matches(c, document, field) for c in required) and (
            not optional or any(lucene_matches(c, document, field) for c in optional)
        )
    if isinstance(node, tree.Not | tree.Prohibit):
        return not lucene_matches(node.a, document, field)
    if isinstance(node, tree.Plus):
        return lucene_matches(node.a, document, field)
    if field is None:  # an unfielded term: any field (Elasticsearch's default_field *)
        if isinstance(node, tree.Word) and node.value == "*":
            return True
        # Across all fields query_string is lenient: a word that is no date skips the date fields.
        return any(
            lucene_matches(node, document, name) for name in _all_fields(document) if name not in DATE_FIELDS
        ) or any(_lenient(node, document, name) for name in _all_fields(document) if name in DATE_FIELDS)
    values = field_values(document, field)
    if isinstance(node, tree.Word):
        term = node.value
        if term == "*":
            return bool(values)  # field:* — the field exists
        wildcard = bool(re.search(r"(?<!\\)[*?]", term))
        return _term_matches(values, field, term if wildcard else _unescape(term), wildcard)
    if isinstance(node, tree.Phrase):
        return _phrase_matches(values, field, _unescape(node.value[1:-1]))
    if isinstance(node, tree.Range):
        return _range_matches(values, field, node)
    raise unsupported(f"query_string syntax [{type(node).__name__}: {node}]")


def _lenient(node: tree.Item, document: dict[str, Any], field: str) -> bool:
    try:
        return lucene_matches(node, document, field)
    except EsError:
        return False


def lucene_parse(text: str) -> tree.Item:
    try:
        return lucene_parser.parse(text)
    except ParseError as exc:
        raise EsError("query_shard_exception", f"Failed to parse query [{text}]: {exc}") from exc


# --- Query DSL ------------------------------------------------------------------------------


def _one(clause: dict[str, Any], what: str) -> tuple[str, Any]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise EsError("parsing_exception", f"[{what}] malformed query, expected a single key")
    return next(iter(clause.items()))


def query_matches(query: dict[str, Any], document: dict[str, Any]) -> bool:
    kind, body = _one(query, "query")
    if kind == "match_all":
        return True
    if kind == "bool":
        unknown = set(body) - {"filter", "must", "should", "must_not", "minimum_should_match", "boost"}
        if unknown:
            raise EsError("parsing_exception", f"[bool] query does not support [{sorted(unknown)[0]}]")

        def clauses(key: str) -> list[dict[str, Any]]:
            value = body.get(key, [])
            return value if isinstance(value, list) else [value]

        if not all(query_matches(q, document) for q in clauses("filter") + clauses("must")):
            return False
        if any(query_matches(q, document) for q in clauses("must_not")):
            return False
        should = clauses("should")
        if not should:
            return True
        needed = int(body.get("minimum_should_match", 0 if clauses("filter") + clauses("must") else 1))
        return sum(query_matches(q, document) for q in should) >= needed
    if kind == "range":
        field, bounds = _one(body, "range")
        return _dsl_range(field, bounds, document)
    if kind == "query_string":
        unknown = set(body) - {"query", "analyze_wildcard", "default_field", "default_operator"}
        if unknown or body.get("default_operator", "OR").upper() != "OR":
            raise unsupported(f"query_string option [{sorted(unknown or {'default_operator'})[0]}]")
        return lucene_matches(lucene_parse(body["query"]), document)
    if kind == "term":
        field, value = _one(body, "term")
        value = value.get("value") if isinstance(value, dict) else value
        return any(v == value for v in field_values(document, field))
    if kind == "terms":
        field, wanted = _one(body, "terms")
        return any(v in wanted for v in field_values(document, field))
    if kind == "exists":
        return bool(field_values(document, body["field"]))
    raise EsError("parsing_exception", f"unknown query [{kind}]")


def _dsl_range(field: str, bounds: dict[str, Any], document: dict[str, Any]) -> bool:
    if set(bounds) - {"gte", "gt", "lte", "lt", "format"}:
        raise unsupported(f"range option {sorted(set(bounds) - {'gte', 'gt', 'lte', 'lt', 'format'})}")
    if bounds.get("format", "epoch_millis") not in ("epoch_millis", "strict_date_optional_time"):
        raise unsupported(f"range format [{bounds['format']}]")
    for value in field_values(document, field):
        key = to_millis(value) if field in DATE_FIELDS else value
        limit = to_millis if field in DATE_FIELDS else (lambda x: x)
        if "gte" in bounds and not key >= limit(bounds["gte"]):
            continue
        if "gt" in bounds and not key > limit(bounds["gt"]):
            continue
        if "lte" in bounds and not key <= limit(bounds["lte"]):
            continue
        if "lt" in bounds and not key < limit(bounds["lt"]):
            continue
        return True
    return False


# --- Aggregations ---------------------------------------------------------------------------

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def interval_millis(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(text))
    if not match:
        raise EsError(
            "illegal_argument_exception", f"failed to parse setting [date_histogram.fixed_interval] with value [{text}]"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def aggregate(aggs: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: _aggregate_one(name, spec, documents) for name, spec in aggs.items()}


def _aggregate_one(name: str, spec: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    sub = spec.get("aggs") or spec.get("aggregations") or {}
    kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
    if len(kinds) != 1:
        raise EsError("parsing_exception", f"Expected exactly one aggregation type in [{name}]")
    kind, body = kinds[0], spec[kinds[0]]
    if kind == "date_histogram":
        return _date_histogram(name, body, sub, documents)
    if kind == "terms":
        return _terms(name, body, sub, documents)
    if kind in METRICS:
        if sub:
            raise EsError(
                "aggregation_initialization_exception",
                f"Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations",
            )
        return _metric(kind, body, documents)
    raise EsError(
        "x_content_parse_exception", f"[1:1] unknown field [{kind}]: Unknown aggregation type [{kind}] in [{name}]"
    )


def _metric(kind: str, body: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    if set(body) - {"field"}:
        raise unsupported(f"{kind} option {sorted(set(body) - {'field'})}")
    field = body["field"]
    values = [v for d in documents for v in field_values(d, field)]
    if field in TEXT_FIELDS:
        raise EsError(
            "illegal_argument_exception", f"Field [{field}] of type [text] is not supported for aggregation [{kind}]"
        )
    if kind == "value_count":
        return {"value": len(values)}
    numbers = [to_millis(v) if field in DATE_FIELDS else float(v) for v in values]
    if not numbers:
        return {"value": None}
    value = float(min(numbers) if kind == "min" else max(numbers))
    return {"value": value, "value_as_string": iso(value)} if field in DATE_FIELDS else {"value": value}


def _date_histogram(
    name: str, body: dict[str, Any], sub: dict[str, Any], documents: list[dict[str, Any]]
) -> dict[str, Any]:
    known = {"field", "fixed_interval", "min_doc_count", "extended_bounds", "format", "time_zone", "offset"}
    if "interval" in body:  # removed in 8.0
        raise EsError("x_content_parse_exception", f"[1:1] [date_histogram] unknown field [interval] in [{name}]")
    if set(body) - known:
        raise unsupported(f"date_histogram option {sorted(set(body) - known)}")
    if "fixed_interval" not in body:
        raise unsupported("date_histogram without fixed_interval (e.g. calendar_interval)")
    if body.get("time_zone", "UTC") not in ("UTC", "utc", "+00:00") or body.get("offset"):
        raise unsupported("date_histogram time_zone/offset")
    field, step = body["field"], interval_millis(body["fixed_interval"])
    by_key: dict[int, list[dict[str, Any]]] = {}
    for document in documents:
        for value in field_values(document, field)[:1]:
            by_key.setdefault(to_millis(value) // step * step, []).append(document)
    keys = set(by_key)
    min_doc_count = int(body.get("min_doc_count", 1))
    bounds = body.get("extended_bounds")
    if min_doc_count == 0 and (keys or bounds):
        low = [to_millis(bounds["min"]) // step * step] if bounds else []
        high = [to_millis(bounds["max"]) // step * step] if bounds else []
        keys = set(range(min(list(keys) + low), max(list(keys) + high) + 1, step))
    epoch = body.get("format") == "epoch_millis"
    buckets = []
    for key in sorted(keys):
        members = by_key.get(key, [])
        if len(members) < min_doc_count:
            continue
        bucket = {"key_as_string": str(key) if epoch else iso(key), "key": key, "doc_count": len(members)}
        buckets.append({**bucket, **aggregate(sub, members)})
    return {"buckets": buckets}


def _terms(name: str, body: dict[str, Any], sub: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    known = {"field", "size", "order", "min_doc_count", "missing", "shard_size"}
    if set(body) - known:
        raise unsupported(f"terms option {sorted(set(body) - known)}")
    field = body["field"]
    if field in TEXT_FIELDS:
        raise EsError(
            "illegal_argument_exception",
            f"Fielddata is disabled on [{field}] in [logs]. Text fields are not optimised for operations that "
            f"require per-document field data like aggregations and sorting, so these operations are disabled "
            f"by default. Please use a keyword field instead.",
        )
    groups: dict[Any, list[dict[str, Any]]] = {}
    for document in documents:
        values = field_values(document, field) or ([body["missing"]] if "missing" in body else [])
        for value in dict.fromkeys(values):
            groups.setdefault(value, []).append(document)
    buckets = [{"key": key, "doc_count": len(members), **aggregate(sub, members)} for key, members in groups.items()]
    buckets = [b for b in buckets if b["doc_count"] >= int(body.get("min_doc_count", 1))]
    order = body.get("order") or {"_count": "desc"}
    orders = order if isinstance(order, list) else [order]
    # Elasticsearch breaks ties by key ascending; sort by it first so that the stable sorts keep it.
    buckets.sort(key=lambda b: b["key"])
    for criterion in reversed(orders):
        ((path, direction),) = criterion.items()
        if path == "_count":
            key: Callable[[dict[str, Any]], Any] = lambda b: b["doc_count"]  # noqa: E731
        elif path in ("_key", "_term"):
            key = lambda b: b["key"]  # noqa: E731
        elif path in sub:
            key = lambda b, p=path: (b[p]["value"] is None, b[p]["value"])  # noqa: E731
        else:
            raise EsError("aggregation_execution_exception", f"Invalid aggregation order path [{path}]")
        buckets.sort(key=key, reverse=direction == "desc")
    size = int(body.get("size", 10))
    shown = buckets[:size]
    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(b["doc_count"] for b in buckets[size:]),
        "buckets": shown,
    }


# --- Search ---------------------------------------------------------------------------------


def _sort_documents(documents: list[tuple[int, dict[str, Any]]], sort: Any) -> list[tuple[int, dict[str, Any]]]:
    criteria = sort if isinstance(sort, list) else [sort]
    for criterion in reversed(criteria):
        if isinstance(criterion, str):
            field, order = criterion, "desc" if criterion == "_score" else "asc"
        else:
            ((field, spec),) = criterion.items()
            order = spec.get("order", "asc") if isinstance(spec, dict) else spec
            if isinstance(spec, dict) and set(spec) - {"order", "unmapped_type"}:
                raise unsupported(f"sort option {sorted(set(spec) - {'order', 'unmapped_type'})}")
        if field == "_doc":
            documents.sort(key=lambda item: item[0], reverse=order == "desc")
            continue
        if field in TEXT_FIELDS:
            raise EsError("illegal_argument_exception", f"Fielddata is disabled on [{field}]; sort on a keyword field")

        def sort_key(item: tuple[int, dict[str, Any]], field: str = field) -> tuple[bool, Any]:
            values = field_values(item[1], field)
            if not values:
                return (True, 0)  # missing values last, whatever the order
            value = to_millis(values[0]) if field in DATE_FIELDS else values[0]
            return (False, value)

        present = [item for item in documents if field_values(item[1], field)]
        missing = [item for item in documents if not field_values(item[1], field)]
        present.sort(key=sort_key, reverse=order == "desc")
        documents = present + missing
    return documents


def _sort_values(document: dict[str, Any], position: int, sort: Any) -> list[Any]:
    values: list[Any] = []
    for criterion in sort if isinstance(sort, list) else [sort]:
        field = criterion if isinstance(criterion, str) else next(iter(criterion))
        if field == "_doc":
            values.append(position)
        else:
            found = field_values(document, field)
            values.append((to_millis(found[0]) if field in DATE_FIELDS else found[0]) if found else None)
    return values


class ElasticsearchDouble:
    """Log documents behind ``_search`` and ``_msearch`` of index ``index``; ``requests`` keeps each
    search body received (one per _msearch line pair), for the tests to look at."""

    def __init__(self, documents: list[dict[str, Any]], index: str = "logs-etl") -> None:
        self.documents = documents
        self.index = index
        self.requests: list[dict[str, Any]] = []

    # The HTTP side.
    def install(self, server: HTTPServer) -> HTTPServer:
        server.expect_request(re.compile(r"^/([^/_][^/]*/)?_msearch$")).respond_with_handler(self._msearch)
        server.expect_request(re.compile(r"^/([^/_][^/]*/)?_search$")).respond_with_handler(self._search)
        return server

    def _answer(self, body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, headers=HEADERS)

    def _path_index(self, request: Request) -> str:
        parts = request.path.strip("/").split("/")
        return parts[0] if len(parts) == 2 else "_all"

    def _search(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            return self._answer(self.search(self._path_index(request), body))
        except EsError as error:
            return self._answer(error.body(), error.status)

    def _msearch(self, request: Request) -> Response:
        lines = [line for line in request.get_data().decode().split("\n") if line.strip()]
        if len(lines) % 2:
            error = EsError("illegal_argument_exception", "The msearch request must be terminated by a newline [\n]")
            return self._answer(error.body(), 400)
        responses = []
        for header_line, body_line in zip(lines[::2], lines[1::2], strict=True):
            header = json.loads(header_line)
            index = header.get("index") or self._path_index(request)
            index = ",".join(index) if isinstance(index, list) else index
            try:
                responses.append({**self.search(index, json.loads(body_line)), "status": 200})
            except EsError as error:
                responses.append(error.body())
        return self._answer({"took": 1, "responses": responses})

    # The search itself.
    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        if set(body) - SEARCH_KEYS:
            raise EsError(
                "parsing_exception", f"Unknown key for a START_OBJECT in [{sorted(set(body) - SEARCH_KEYS)[0]}]."
            )
        patterns = [p for p in index.split(",") if p]
        if index not in ("_all", "*") and not any(fnmatch.fnmatchcase(self.index, p) for p in patterns):
            if all("*" not in p for p in patterns):
                raise EsError("index_not_found_exception", f"no such index [{index}]", status=404)
            return self._result([], body)
        query = body.get("query") or {"match_all": {}}
        matched = [(i, d) for i, d in enumerate(self.documents) if query_matches(query, d)]
        return self._result(matched, body)

    def _result(self, matched: list[tuple[int, dict[str, Any]]], body: dict[str, Any]) -> dict[str, Any]:
        size, start = int(body.get("size", 10)), int(body.get("from", 0))
        sort = body.get("sort")
        ordered = _sort_documents(list(matched), sort) if sort else matched
        hits = []
        for position, document in ordered[start : start + size]:
            hit: dict[str, Any] = {"_index": self.index, "_id": f"doc-{position}", "_score": None if sort else 1.0}
            hit["_source"] = document
            if body.get("docvalue_fields"):
                hit["fields"] = {
                    (f if isinstance(f, str) else f["field"]): [
                        iso(to_millis(v)) for v in field_values(document, f if isinstance(f, str) else f["field"])
                    ]
                    for f in body["docvalue_fields"]
                }
            if sort:
                hit["sort"] = _sort_values(document, position, sort)
            hits.append(hit)
        track = body.get("track_total_hits", TOTAL_HITS_LIMIT)
        limit = None if track is True else int(track) if track is not False else 0
        total = {"value": len(matched), "relation": "eq"}
        if limit is not None and len(matched) > limit:
            total = {"value": limit, "relation": "gte"}
        answer: dict[str, Any] = {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": total, "max_score": None if sort or not hits else 1.0, "hits": hits},
        }
        aggs = body.get("aggs") or body.get("aggregations")
        if aggs:
            answer["aggregations"] = aggregate(aggs, [d for _, d in matched])
        return answer
