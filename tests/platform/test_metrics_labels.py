"""/metrics stays bounded whatever clients send: a label taken from a request has a fixed set of
values, so invented HTTP methods and random paths cannot add series (each series costs memory in
every worker and in Prometheus, for good)."""

from __future__ import annotations

import uuid

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families


def series(client: Client) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """The label sets of the HTTP request metrics now exposed, by metric."""
    text = client.get("/metrics").content.decode()
    found: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("django_http_request"):
            for sample in family.samples:
                found.setdefault(sample.name, set()).add(tuple(sorted(sample.labels.items())))
    return found


def added(before: dict[str, set], after: dict[str, set]) -> dict[str, set]:
    return {name: labels - before.get(name, set()) for name, labels in after.items()}


def test_invented_methods_and_random_paths_add_a_bounded_number_of_series(db):
    client = Client()
    client.get("/healthz")
    before = series(client)
    for n in range(50):
        client.generic(f"INVENTED{n}", "/healthz")
        client.generic(f"X-{uuid.uuid4().hex[:8]}", f"/no-such-page/{uuid.uuid4().hex}")
        client.get(f"/{uuid.uuid4().hex}/{n}")
    new = added(before, series(client))

    requests = new["django_http_requests_total"]
    # At most: other×healthz, other×unmatched, GET×unmatched and GET×metrics (the scrape itself), each
    # with the status it answers (405, 404, a redirect, 200): a handful, not 150.
    assert len(requests) <= 8, sorted(requests)
    methods = {dict(labels)["method"] for labels in requests}
    views = {dict(labels)["view"] for labels in requests}
    assert methods <= {"other", "GET"}
    assert views <= {"healthz", "unmatched", "metrics"}
    assert len(new["django_http_request_duration_seconds_count"]) <= 4


def test_standard_methods_keep_their_own_label(db):
    client = Client()
    client.options("/healthz")
    client.delete("/healthz")
    client.generic("get", "/healthz")  # methods are case-insensitive on the wire; Django upper-cases
    labels = series(client)["django_http_requests_total"]
    methods = {dict(label)["method"] for label in labels if dict(label)["view"] == "healthz"}
    assert {"OPTIONS", "DELETE", "GET"} <= methods
    assert not {m for m in methods if m.lower() == "get" and m != "GET"}
