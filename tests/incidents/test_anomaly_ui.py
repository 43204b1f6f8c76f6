"""Reading an anomaly incident: its Evidence panel and band on the incident page, the loader page's
anomaly charts, and the version diff the "began after version N" line links to."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group

from etl_monitor.models import FieldProtection
from etl_monitor.roles import Role
from incidents.anomaly.band import band_anchor
from incidents.anomaly.evidence import anomaly_evidence
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from loaders import services
from loaders.models import Loader, LoaderVersion
from tests.incidents.conftest import add_run
from tests.incidents.test_anomaly_rule import NOW, START, add_hourly_runs, evaluate_hourly
from tests.incidents.test_incident_page import incident_of_failed_run


@pytest.fixture
def anomaly_rule(rule_factory):
    def make(name: str = "Rows written anomaly", **fields):
        return rule_factory(
            "anomaly",
            name=name,
            params={"source": "rows_written"},
            threshold=None,
            interval_seconds=3600,
            message="{subject}: {series} {headline}",
            **fields,
        )

    return make


def approve_version_2(loader: Loader, editor, approver, at: dt.datetime, **data) -> LoaderVersion:
    services.loader_edit(user=editor, loader=loader, data=data or {"description": "new owner"})
    draft = Loader.objects.get(pk=loader.pk).open_version
    services.loader_version_approve(user=approver, version=services.loader_version_submit(user=editor, version=draft))
    LoaderVersion.objects.filter(loader=loader, number=2).update(decided_at=at)
    LoaderVersion.objects.filter(loader=loader, number=1).update(decided_at=START - dt.timedelta(days=1))
    return LoaderVersion.objects.get(loader=loader, number=2)


def a_drop(loader: Loader, at: dt.datetime = NOW, rows: int = 10) -> None:
    add_run(loader, started=at, seconds=0, rows_written=rows)


@pytest.fixture
def drop_after_approval(active_loader, anomaly_rule, editor, approver):
    """SALES-DAILY: three weeks of a daily pattern, version 2 approved 42 minutes before a drop to 10
    rows; the anomaly incident it opened."""
    add_hourly_runs(active_loader, START, NOW)
    # A change of the description: no restart of the baseline (a contract change would relearn first).
    v2 = approve_version_2(active_loader, editor, approver, NOW - dt.timedelta(minutes=42))
    rule = anomaly_rule()
    rule_evaluate(rule=rule, now=NOW - dt.timedelta(minutes=1))
    a_drop(active_loader)
    rule_evaluate(rule=rule, now=NOW + dt.timedelta(minutes=1))
    return Incident.objects.get(rule=rule), v2


def page(client, user, incident: Incident) -> str:
    client.force_login(user)
    response = client.get(f"/admin/incidents/incident/{incident.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def evidence_of(html: str) -> str:
    section = re.search(
        r'<section class="incident-section incident-evidence" id="evidence">(.*?)</section>', html, re.S
    )
    assert section, "the page has an Evidence panel"
    return re.sub(r"\s+", " ", section.group(1))


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_it_shows_the_evidence_and_the_version_line(client, request, role, drop_after_approval, approver):
    incident, v2 = drop_after_approval
    html = page(client, request.getfixturevalue(role), incident)
    evidence = evidence_of(html)
    metrics = incident.metrics
    assert 'id="evidence-observed">10 <span class="muted">at Fri 27 Nov 12:00</span>' in evidence
    low, high = metrics["expected_low"], metrics["expected_high"]
    assert f"{low:,.0f} – {high:,.0f}" in evidence
    assert f"{metrics['score']:.2f} of 1 (fires at 0.75 or more: medium sensitivity)" in evidence
    assert metrics["seasonality"] in ("daily", "weekly")
    assert f'id="evidence-seasonality">{metrics["seasonality"]} (by hour' in evidence
    assert 'id="evidence-learning">learned' in evidence
    version_url = f"/admin/loaders/loaderversion/{v2.pk}/change/#changes"
    assert (
        f'Began 42 minutes after <a href="{version_url}">version 2</a> was approved by {approver.username}.' in evidence
    )
    anchor = band_anchor(incident.rule_id, "SALES-DAILY")
    assert f'href="/admin/ops/loaders/SALES-DAILY/#{anchor}" id="evidence-series-link"' in evidence
    assert f'data-band="/admin/incidents/incident/{incident.pk}/band/"' in evidence
    assert 'id="incident-chart"' not in html, "the band replaces the generic chart"


def test_the_version_line_names_only_the_changes_the_reader_may_see():
    note = {
        "number": 7,
        "version_id": 70,
        "by": "alice",
        "minutes": 5,
        "changed": ["expected_rows_max", "schedule_cron"],
    }
    metrics = {"kind": "anomaly", "series": "rows written", "observed": 1, "after_version": note}
    assert anomaly_evidence(metrics, hidden=set()).version_changed == ["expected rows (maximum)", "schedule"]
    assert anomaly_evidence(metrics, hidden={"schedule_cron"}).version_changed == ["expected rows (maximum)"]
    assert anomaly_evidence({"kind": "threshold"}, hidden=set()) is None


def test_missing_data_says_how_long_and_how_often_usually(client, viewer, active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW - dt.timedelta(hours=6))
    rule_evaluate(rule=anomaly_rule(), now=NOW)
    evidence = evidence_of(page(client, viewer, Incident.objects.get()))
    assert 'id="evidence-missing">No new rows written for 6 h 55 min, usually every 1 h' in evidence
    assert "evidence-observed" not in evidence
    assert "Began" not in evidence, "no approval near it"


def test_other_incidents_keep_their_page(client, operator, active_loader):
    html = page(client, operator, incident_of_failed_run(active_loader))
    assert 'id="evidence"' not in html and "anomaly_band.js" not in html
    assert 'id="incident-chart"' in html


# --- the band endpoint of an incident -------------------------------------------------------------


def test_the_band_endpoint_draws_the_series_around_the_incident(client, viewer, drop_after_approval):
    incident, _v2 = drop_after_approval
    client.force_login(viewer)
    data = client.get(f"/admin/incidents/incident/{incident.pk}/band/").json()
    assert data["subject"] == "SALES-DAILY" and data["series"] == "rows written"
    assert data["to"] - data["from"] >= 7 * 86400
    assert data["value"][-1] == 10 and data["anomaly"][-1] is True
    assert data["low"][-1] > 10
    assert data["opened_at"] == incident.first_seen.timestamp()
    assert [a["label"] for a in data["approvals"]] == ["v2"]
    assert len(data["t"]) == len(data["high"]) == 7 * 24 + 1


def test_the_band_endpoint_refuses_anonymous_and_roleless_users(client, make_user, drop_after_approval):
    incident, _v2 = drop_after_approval
    url = f"/admin/incidents/incident/{incident.pk}/band/"
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(make_user())  # staff, no role
    assert client.get(url).status_code == 403


def test_the_band_endpoint_has_nothing_for_other_incidents(client, viewer, active_loader):
    incident = incident_of_failed_run(active_loader)
    client.force_login(viewer)
    response = client.get(f"/admin/incidents/incident/{incident.pk}/band/")
    assert response.status_code == 404
    assert "is a run_failed rule, not an anomaly rule" in response.json()["detail"]


# --- the loader page ------------------------------------------------------------------------------


def loader_page(client, user) -> str:
    client.force_login(user)
    response = client.get("/admin/ops/loaders/SALES-DAILY/")
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_loader_page_charts_each_anomaly_series_with_its_state(client, viewer, active_loader, anomaly_rule):
    add_hourly_runs(active_loader, START, NOW)
    rule = anomaly_rule()
    evaluate_hourly(rule, NOW - dt.timedelta(hours=2), NOW)
    anomaly_rule(name="Disabled one", enabled=False)
    html = loader_page(client, viewer)
    anchor = band_anchor(rule.pk, "SALES-DAILY")
    assert f'<div class="ops-band" id="{anchor}">' in html
    assert "Rows written anomaly: rows written" in html
    assert '<span class="badge badge-ok">Normal</span>' in html
    assert f'data-band="/admin/ops/loaders/SALES-DAILY/anomaly/{rule.pk}.json?subject=SALES-DAILY"' in html
    assert "Disabled one" not in html


def test_a_learning_series_says_so(client, viewer, active_loader, anomaly_rule):
    add_hourly_runs(active_loader, NOW - dt.timedelta(days=3, hours=1), NOW)
    rule_evaluate(rule=anomaly_rule(), now=NOW)
    html = loader_page(client, viewer)
    assert '<span class="badge badge-learning">Learning</span>' in html
    assert "Learning: 3 of 7 days of history" in html


def test_a_loader_outside_every_anomaly_rule_has_no_section(client, viewer, active_loader, anomaly_rule, team):
    other = services.loader_create(
        user=active_loader.versions.first().created_by,
        data={"loader_code": "OTHER", "name": "Other", "owner": team.slug, "schedule_cron": "0 * * * *"},
    )
    rule = anomaly_rule()
    rule.scope = "LOADERS"
    rule.save()
    rule.scope_loaders.set([other])
    DetectionRule.objects.filter(kind="anomaly").exclude(pk=rule.pk).update(enabled=False)  # the seeded ones
    assert 'id="anomaly"' not in loader_page(client, viewer)


def test_the_loader_band_endpoint(client, viewer, make_user, active_loader, anomaly_rule, rule_factory):
    add_hourly_runs(active_loader, START, NOW)
    a_drop(active_loader, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), rows=1)
    rule = anomaly_rule()
    url = f"/admin/ops/loaders/SALES-DAILY/anomaly/{rule.pk}.json"
    assert client.get(url).status_code == 401
    client.force_login(make_user())
    assert client.get(url).status_code == 403
    client.force_login(viewer)
    data = client.get(url).json()
    assert data["subject"] == "SALES-DAILY"
    assert data["to"] - data["from"] == pytest.approx(14 * 86400, abs=5)
    assert data["value"][-1] == 1
    assert client.get(url, {"subject": "OTHER/key"}).status_code == 400
    threshold = rule_factory("run_duration", threshold=60)
    assert client.get(f"/admin/ops/loaders/SALES-DAILY/anomaly/{threshold.pk}.json").status_code == 404


# --- the version diff the version line links to ---------------------------------------------------


def test_an_approved_version_shows_what_it_changed_from_the_one_before(client, viewer, active_loader, editor, approver):
    v2 = approve_version_2(
        active_loader, editor, approver, NOW, expected_rows_max=40_000, connection_host="HOST-MARKER-4412"
    )
    rule = FieldProtection.objects.create(
        model_label="loaders.loaderversion", field_name="connection_host", level="HIDDEN"
    )
    rule.exempt_groups.set(Group.objects.filter(name=Role.ADMIN))
    client.force_login(viewer)
    html = re.sub(r"\s+", " ", client.get(f"/admin/loaders/loaderversion/{v2.pk}/change/").content.decode())
    assert '<div class="module" id="changes"' in html
    assert "Changes from version 1" in html
    assert "<td>Expected rows max</td><td>1000</td><td><strong>40000</strong></td>" in html
    assert "HOST-MARKER-4412" not in html, "a HIDDEN field says only that it changed"
    assert "•••••• (changed)" in html
    v1 = LoaderVersion.objects.get(loader=active_loader, number=1)
    first = client.get(f"/admin/loaders/loaderversion/{v1.pk}/change/").content.decode()
    assert "No version was approved before this one" in first
