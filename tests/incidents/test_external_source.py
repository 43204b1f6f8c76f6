"""A kind whose external source is down yields one 'data source unreachable' incident; the cycle goes on."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request

import pytest

from incidents import kinds
from incidents.detection import rule_evaluate
from incidents.kinds import Measurement, RuleKind, SourceUnavailable
from incidents.models import Incident
from incidents.tasks import detection_tick
from tests.incidents.conftest import NOW, add_signals
from tests.net import free_port


class HttpProbe(RuleKind):
    """Test kind: asks a (real) HTTP endpoint for a number, as the Prometheus kinds will."""

    name = "test_http_probe"
    rule_type = "INFRASTRUCTURE"
    default_threshold = 1.0
    url = ""

    def sources(self, rule):
        return ["probe"]

    def evaluate(self, rule, loaders, now):
        try:
            with urllib.request.urlopen(self.url, timeout=1) as response:
                return [Measurement("probe", float(response.read()))]
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceUnavailable("probe", type(exc).__name__) from exc


@pytest.fixture
def probe_kind():
    HttpProbe.url = f"http://127.0.0.1:{free_port()}/value"
    kinds.kind_register(HttpProbe)
    yield
    kinds._KINDS.pop(HttpProbe.name, None)


def test_an_unreachable_source_is_reported_once_and_the_cycle_completes(probe_kind, rule_factory, active_loader):
    probe = rule_factory("test_http_probe", rule_type="INFRASTRUCTURE", threshold=1.0)
    add_signals(active_loader, failed=5, ok=0)
    failing = rule_factory("signal_failure_rate", threshold=5.0)
    for _ in range(2):
        report = rule_evaluate(rule=probe, now=NOW)
        assert "probe: URLError" in report.error
    incident = Incident.objects.get(subject="source:probe")
    assert incident.title == "Data source unreachable: probe" and incident.occurrences == 1  # one outage
    assert incident.rule is None and incident.severity == "HIGH"  # the source's incident, not the rule's
    probe.refresh_from_db()
    assert probe.last_error == "source unavailable: probe: URLError"
    assert rule_evaluate(rule=failing, now=NOW).decisions[0].action == "opened"


def test_a_crashing_rule_does_not_stop_the_tick(rule_factory, active_loader):
    broken = rule_factory("metric_threshold", threshold=1.0, params={"signal_key": "x", "aggregation": "nope"})
    report = rule_evaluate(rule=broken, now=NOW)
    assert report.error.startswith("evaluation failed")
    broken.refresh_from_db()
    assert broken.last_error.startswith("evaluation failed") and broken.next_due_at is not None
    assert detection_tick() >= 1  # the other rules are still enqueued and evaluated


def test_the_unreachable_incident_resolves_when_the_source_is_back(probe_kind, rule_factory, db):
    probe = rule_factory("test_http_probe", rule_type="INFRASTRUCTURE", threshold=1.0)
    rule_evaluate(rule=probe, now=NOW)
    HttpProbe.url = "data:text/plain,0"  # the source answers again (value 0: no breach, no measurement kept)
    rule_evaluate(rule=probe, now=NOW + dt.timedelta(minutes=1))
    assert Incident.objects.get(subject="source:probe").status == "RESOLVED"


def test_rules_sharing_an_unreachable_source_share_one_incident(probe_kind, rule_factory, db):
    first = rule_factory("test_http_probe", rule_type="INFRASTRUCTURE", threshold=1.0)
    second = rule_factory("test_http_probe", rule_type="INFRASTRUCTURE", threshold=2.0, name="Second probe")
    for rule in (first, second):
        assert rule_evaluate(rule=rule, now=NOW).decisions[0].subject == "source:probe"
    incident = Incident.objects.get()
    assert incident.subject == "source:probe" and incident.occurrences == 1  # one outage, however many rules
    assert [e.kind for e in incident.events.order_by("pk")] == ["OPENED"]


def test_a_rule_of_a_kind_not_installed_is_reported_not_crashing(rule_factory, db):
    from incidents.models import DetectionRule

    rule = DetectionRule.objects.create(name="From a later release", kind="tempo_span_count", threshold=1.0)
    report = rule_evaluate(rule=rule, now=NOW)
    assert report.error == "kind 'tempo_span_count' is not available in this installation"
