"""The Alertmanager webhook: Alertmanager's payload (version 4) over Django's test client, each alert
opening, firing again or resolving the incident of its fingerprint, repeats changing nothing; and
end to end, Debian's Prometheus and Alertmanager posting to the live server."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest
from django.test import Client

from incidents.models import EventKind, Incident, IncidentStatus
from loaders.models import Loader
from tests.conftest import _service_unavailable, at_once
from tests.integrations.prom import Alertmanager, Exporter, Prometheus

WEBHOOK = "/integrations/alertmanager/webhook/"
TOKEN = "am-token-for-tests"
STARTS = "2026-05-04T10:00:00.123456789Z"
LATER = "2026-05-04T11:30:00.5Z"


@pytest.fixture(autouse=True)
def configured(settings: Any, db: Any) -> None:
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.NOTIFICATIONS_ENABLED = False  # the timeline is what these tests read


def alert(
    fingerprint: str = "1a30ba71cca2921f",
    *,
    status: str = "firing",
    starts: str = STARTS,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager writes it (``labels`` add to alertname and instance)."""
    return {
        "status": status,
        "labels": {"alertname": "ProbeFailure", "instance": "https://shop.example.org", **labels},
        "annotations": {"summary": "Shop probe failing"} if annotations is None else annotations,
        "startsAt": starts,
        "endsAt": "2026-05-04T10:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], version: Any = "4") -> dict[str, Any]:
    firing = any(a.get("status") == "firing" for a in alerts)
    return {
        "version": version,
        "groupKey": '{}:{alertname="ProbeFailure"}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "etl-monitor",
        "groupLabels": {"alertname": "ProbeFailure"},
        "commonLabels": {"alertname": "ProbeFailure"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": list(alerts),
    }


def post(body: Any, *, token: str | None = TOKEN, raw: bytes | None = None, path: str = WEBHOOK) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else json.dumps(body).encode()
    return Client().post(path, data=data, content_type="application/json", headers=headers)


def our_fingerprint(fingerprint: str) -> str:
    return hashlib.sha256(f"alertmanager:{fingerprint}".encode()).hexdigest()


def timeline(incident: Incident) -> list[str]:
    return list(incident.events.order_by("pk").values_list("kind", flat=True))


# --- refusals -----------------------------------------------------------------------------------------------


def test_it_is_not_there_without_a_token(settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = ""

    response = post(payload(alert()), token="")

    assert response.status_code == 404
    assert response.json() == {"detail": "The Alertmanager webhook is not configured (ALERTMANAGER_WEBHOOK_TOKEN)."}
    assert Incident.objects.count() == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "other scheme", "no scheme"],
)
def test_a_missing_or_wrong_token_is_refused_and_changes_nothing(headers, caplog):
    body = json.dumps(payload(alert())).encode()

    with caplog.at_level(logging.WARNING, logger="integrations.views"):
        response = Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Missing or wrong bearer token."}
    assert Incident.objects.count() == 0
    assert "bearer token" in caplog.text
    assert TOKEN not in caplog.text and "not-the-token" not in caplog.text


def test_another_payload_version_is_refused_naming_both_versions():
    response = post(payload(alert(), version="3"))

    assert response.status_code == 400
    assert response.json()["detail"] == (
        'version: "3" is not supported; this webhook accepts Alertmanager\'s payload version "4"'
    )
    assert Incident.objects.count() == 0


def test_a_body_that_is_not_json_is_a_bad_request():
    response = post(None, raw=b"not json {")

    assert response.status_code == 400
    assert response.json() == {"detail": "The body is not JSON."}


@pytest.mark.parametrize("body", [{"version": "4"}, {"version": "4", "alerts": {}}, ["alerts"]])
def test_a_payload_without_a_list_of_alerts_is_a_bad_request(body):
    response = post(body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith(("alerts: ", "body: "))


def test_one_bad_alert_refuses_the_whole_post_naming_each_bad_field():
    no_fingerprint = alert()
    del no_fingerprint["fingerprint"]
    bad_start = alert("bbbb", starts="yesterday") | {"status": "pending"}

    response = post(payload(alert("aaaa"), no_fingerprint, bad_start, "not an alert"))

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "alerts[1].fingerprint": ["required"],
        "alerts[2].status": ['must be "firing" or "resolved"'],
        "alerts[2].startsAt": ["must be an RFC 3339 timestamp"],
        "alerts[3]": ["must be an object"],
    }
    assert response.json()["detail"].startswith("alerts[1].fingerprint: required; ")
    assert Incident.objects.count() == 0  # the good alerts[0] neither


def test_labels_must_be_strings():
    response = post(payload(alert(severity=2)))

    assert response.status_code == 400
    assert response.json()["errors"] == {"alerts[0].labels": ["must be an object of strings"]}


def test_a_body_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr("integrations.views.MAX_BODY", 100)

    response = post(payload(alert()))

    assert response.status_code == 413
    assert Incident.objects.count() == 0


def test_only_post_is_answered_with_or_without_the_trailing_slash():
    assert Client().get(WEBHOOK).status_code == 405
    assert post(payload(alert()), path=WEBHOOK.rstrip("/")).status_code == 200


# --- firing ---------------------------------------------------------------------------------------------------


def test_a_firing_alert_opens_an_incident_described_by_its_annotations():
    annotations = {
        "summary": "Shop probe failing",
        "description": "https://shop.example.org has been down for 5 minutes.",
        "runbook_url": "https://runbooks.example.org/probe",
    }

    response = post(payload(alert(annotations=annotations, severity="critical", job="blackbox")))

    assert response.status_code == 200
    incident = Incident.objects.get()
    assert response.json() == {
        "counts": {"opened": 1},
        "alerts": [
            {"fingerprint": "1a30ba71cca2921f", "status": "firing", "incident": incident.pk, "action": "opened"}
        ],
    }
    assert incident.fingerprint == our_fingerprint("1a30ba71cca2921f")
    assert (incident.title, incident.severity, incident.category) == (
        "Shop probe failing",
        "CRITICAL",
        "INFRASTRUCTURE",
    )
    assert incident.description == "https://shop.example.org has been down for 5 minutes."
    assert incident.subject == "ProbeFailure instance=https://shop.example.org, job=blackbox"
    assert incident.suggestion == "Runbook: https://runbooks.example.org/probe"
    assert incident.rule is None and incident.loader is None
    assert incident.metrics == {
        "source": "alertmanager",
        "labels": {
            "alertname": "ProbeFailure",
            "instance": "https://shop.example.org",
            "severity": "critical",
            "job": "blackbox",
        },
        "annotations": annotations,
        "startsAt": STARTS,
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0",
        "fingerprint": "1a30ba71cca2921f",
    }
    assert timeline(incident) == [EventKind.OPENED]


def test_without_annotations_the_title_names_the_alert_and_its_labels():
    post(payload(alert(annotations={}, job="blackbox", region="eu", zone="b", severity="warning")))

    incident = Incident.objects.get()
    assert incident.title == "ProbeFailure (instance=https://shop.example.org, job=blackbox, region=eu)"
    assert incident.description == incident.title
    assert incident.subject == "ProbeFailure instance=https://shop.example.org, job=blackbox, region=eu, zone=b"


def test_long_labels_are_cut_to_the_fields_lengths():
    post(payload(alert(annotations={"summary": "s" * 400}, path="p" * 400)))

    incident = Incident.objects.get()
    assert len(incident.title) == 300 and len(incident.subject) == 300
    assert incident.metrics["labels"]["path"] == "p" * 400  # the snapshot keeps what was sent


@pytest.mark.parametrize(
    ("labels", "severity"),
    [
        ({"severity": "critical"}, "CRITICAL"),
        ({"severity": "Page"}, "CRITICAL"),
        ({"severity": "error"}, "HIGH"),
        ({"severity": "WARNING"}, "MEDIUM"),
        ({"severity": "info"}, "LOW"),
        ({"severity": "disaster"}, "MEDIUM"),
        ({}, "MEDIUM"),
    ],
)
def test_the_severity_label_is_mapped(labels, severity):
    post(payload(alert(**labels)))

    assert Incident.objects.get().severity == severity


def test_the_severity_map_and_default_come_from_the_settings(settings):
    settings.ALERTMANAGER_SEVERITY_MAP = {"critical": "high", "warning": "NOT-A-SEVERITY"}
    settings.ALERTMANAGER_DEFAULT_SEVERITY = "LOW"

    post(payload(alert("a", severity="critical"), alert("b", severity="warning"), alert("c", severity="page")))

    assert dict(Incident.objects.values_list("metrics__fingerprint", "severity")) == {
        "a": "HIGH",
        "b": "LOW",
        "c": "LOW",
    }


@pytest.mark.parametrize(
    ("category", "expected"), [("log", "LOG"), ("Integration", "INTEGRATION"), ("db", "INFRASTRUCTURE")]
)
def test_a_category_label_sets_the_category_when_it_is_one_of_ours(category, expected):
    post(payload(alert(category=category)))

    assert Incident.objects.get().category == expected


def test_a_loader_code_label_links_the_loader(active_loader):
    post(payload(alert("known", loader_code="SALES-DAILY"), alert("unknown", loader_code="NO-SUCH-LOADER")))

    assert Incident.objects.get(fingerprint=our_fingerprint("known")).loader == active_loader
    assert Incident.objects.get(fingerprint=our_fingerprint("unknown")).loader is None
    assert not Loader.objects.filter(loader_code="NO-SUCH-LOADER").exists()


def test_two_alerts_in_one_post_are_two_incidents():
    response = post(payload(alert("aaaa", instance="a"), alert("bbbb", instance="b")))

    assert response.json()["counts"] == {"opened": 2}
    assert Incident.objects.filter(status=IncidentStatus.OPEN).count() == 2


# --- repeats and new occurrences ------------------------------------------------------------------------------


def test_a_repost_of_the_same_occurrence_changes_nothing_but_last_seen():
    post(payload(alert()))
    incident = Incident.objects.get()

    again = post(payload(alert()))

    assert again.json()["counts"] == {"unchanged": 1}
    assert again.json()["alerts"][0]["incident"] == incident.pk
    after = Incident.objects.get()
    assert (after.occurrences, after.status, after.metrics) == (1, IncidentStatus.OPEN, incident.metrics)
    assert after.last_seen > incident.last_seen
    assert timeline(after) == [EventKind.OPENED]


def test_a_new_starts_at_fires_the_active_incident_again():
    post(payload(alert()))

    response = post(payload(alert(starts=LATER)))

    assert response.json()["counts"] == {"refired": 1}
    incident = Incident.objects.get()
    assert (incident.occurrences, incident.metrics["startsAt"]) == (2, LATER)


def test_a_resolved_alert_resolves_its_incident():
    post(payload(alert()))

    response = post(payload(alert(status="resolved")))

    assert response.json()["counts"] == {"resolved": 1}
    incident = Incident.objects.get()
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_at is not None
    resolved = incident.events.get(kind=EventKind.RESOLVED)
    assert resolved.message == "Resolved in Alertmanager"
    assert resolved.data == {"source": "alertmanager", "endsAt": "2026-05-04T10:20:00Z"}


def test_a_resolved_alert_with_nothing_open_is_fine():
    response = post(payload(alert(status="resolved")))

    assert response.status_code == 200
    assert response.json()["alerts"] == [
        {"fingerprint": "1a30ba71cca2921f", "status": "resolved", "incident": None, "action": "nothing open"}
    ]
    assert Incident.objects.count() == 0


def test_a_new_occurrence_after_the_resolution_reopens_the_incident():
    post(payload(alert()))
    post(payload(alert(status="resolved")))

    response = post(payload(alert(starts=LATER)))

    assert response.json()["counts"] == {"reopened": 1}
    incident = Incident.objects.get()
    assert incident.status == IncidentStatus.OPEN and incident.occurrences == 2
    assert timeline(incident) == [EventKind.OPENED, EventKind.RESOLVED, EventKind.REOPENED]
    reopened = incident.events.get(kind=EventKind.REOPENED).message
    assert reopened.startswith("Reopened by a new breach: ") and "Mon 4 May 11:30" in reopened  # says which


def test_an_occurrence_already_resolved_is_not_reopened_by_a_repost(operator):
    from incidents.services import incident_resolve

    post(payload(alert()))
    incident_resolve(user=operator, incident=Incident.objects.get())  # resolved here, Alertmanager still fires

    response = post(payload(alert()))

    assert response.json()["counts"] == {"already resolved": 1}
    assert Incident.objects.get().status == IncidentStatus.RESOLVED


def test_a_late_post_about_an_earlier_occurrence_is_ignored():
    post(payload(alert(starts=LATER)))
    incident = Incident.objects.get()

    response = post(payload(alert(status="resolved"), alert("other", status="firing")))
    late_firing = post(payload(alert()))

    assert response.json()["alerts"][0]["action"] == "earlier occurrence"
    assert late_firing.json()["counts"] == {"earlier occurrence": 1}
    after = Incident.objects.get(pk=incident.pk)
    assert (after.status, after.occurrences, after.metrics["startsAt"]) == (IncidentStatus.OPEN, 1, LATER)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_identical_posts_at_once_open_one_incident_counted_once(require_postgres, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    body = payload(alert("aaaa", instance="a"), alert("bbbb", instance="b"))
    answers = at_once(lambda: post(body).status_code, 4)
    assert answers == [200] * 4
    assert Incident.objects.count() == 2
    for incident in Incident.objects.all():
        assert incident.occurrences == 1
        assert timeline(incident) == [EventKind.OPENED]


# --- end to end: Prometheus → Alertmanager → ETL Monitor ------------------------------------------------------

BREAKER = 'resilience4j_circuitbreaker_state{name="payments",state="open"}'
BREAKER_RULES = """groups:
  - name: breakers
    interval: 1s
    rules:
      - alert: CircuitBreakerOpen
        expr: resilience4j_circuitbreaker_state{state="open"} == 1
        labels:
          severity: critical
        annotations:
          summary: Circuit breaker {{ $labels.name }} is open
"""


def incident_when(check: Callable[[Incident], bool], seconds: float = 60) -> Incident:
    """Poll the database until an incident passes ``check``; fail with what there is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [incident for incident in Incident.objects.all() if check(incident)]
        if found:
            return found[0]
        time.sleep(0.3)
    pytest.fail(f"no such incident after {seconds:.0f} s: {list(Incident.objects.values('title', 'status'))}")


@pytest.mark.django_db(transaction=True)
def test_a_real_alertmanager_opens_the_incident_and_resolves_it(live_server, settings):
    if not (Prometheus.available() and Alertmanager.available()):
        _service_unavailable("Prometheus and Alertmanager (the Debian packages prometheus, prometheus-alertmanager)")
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    with ExitStack() as running:
        exporter = Exporter().start()
        running.callback(exporter.stop)
        exporter.set(BREAKER, 1)
        alertmanager = Alertmanager(live_server.url + WEBHOOK, token=TOKEN)
        running.callback(alertmanager.stop)
        alertmanager.start()
        prometheus = Prometheus(
            {"exporter": ([exporter.address], "/metrics")}, rules=BREAKER_RULES, alertmanager=alertmanager.url
        )
        running.callback(prometheus.stop)
        prometheus.start()

        incident = incident_when(lambda i: i.severity == "CRITICAL")
        assert (incident.title, incident.status, incident.category) == (
            "Circuit breaker payments is open",
            IncidentStatus.OPEN,
            "INFRASTRUCTURE",
        )
        assert incident.metrics["labels"]["alertname"] == "CircuitBreakerOpen"
        assert "name=payments" in incident.subject

        exporter.set(BREAKER, 0)
        resolved = incident_when(lambda i: i.status == IncidentStatus.RESOLVED)

    assert resolved.pk == incident.pk and Incident.objects.count() == 1
    assert resolved.events.get(kind=EventKind.RESOLVED).data["source"] == "alertmanager"
    assert resolved.occurrences == 1
