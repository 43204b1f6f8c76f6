"""The on-call incident page and the incident list in the admin (rendered by Django's test client)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from etl_monitor.models import FieldProtection
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident, IncidentStatus
from signals_app.models import Run

TRACEBACK = 'Traceback (most recent call last):\n  File "load.py", line 12, in main\n    load()\nValueError: boom'


def incident_of_failed_run(loader, *, at: dt.datetime | None = None) -> Incident:
    """A failed run of ``loader`` with a traceback (after two good ones), and the run_failed
    incident detection opens for it."""
    at = at or timezone.now()
    for hours in (3, 2):
        Run.objects.create(
            loader=loader,
            status="SUCCEEDED",
            started_at=at - dt.timedelta(hours=hours),
            finished_at=at - dt.timedelta(hours=hours) + dt.timedelta(minutes=20),
            duration_seconds=1200,
        )
    Run.objects.create(
        loader=loader,
        status="FAILED",
        started_at=at - dt.timedelta(minutes=30),
        finished_at=at - dt.timedelta(minutes=5),
        duration_seconds=1500,
        error_text=TRACEBACK,
        correlation_id="corr-42",
    )
    rule = DetectionRule.objects.create(
        name="Run failed (page)",
        kind="run_failed",
        threshold=0,
        window_seconds=3600,
        severity="HIGH",
        message="{subject}: a run failed",
    )
    rule_evaluate(rule=rule, now=at)
    return Incident.objects.get(rule=rule)


@pytest.fixture
def incident(active_loader) -> Incident:
    return incident_of_failed_run(active_loader)


def page_of(client, user, incident: Incident) -> str:
    client.force_login(user)
    response = client.get(f"/admin/incidents/incident/{incident.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_title_once_and_what_fired_in_words(client, viewer, incident):
    Incident.objects.filter(pk=incident.pk).update(description=incident.title)
    page = page_of(client, viewer, incident)
    body = page.split("<body", 1)[1]
    above_the_timeline = body.split('id="timeline"', 1)[0]  # the timeline's "Opened" entry quotes it
    assert above_the_timeline.count("SALES-DAILY: a run failed") == 1
    assert "1 failed run in the last 1 h" in page


def test_it_shows_the_runs_traceback_as_a_block_with_real_line_breaks(client, viewer, incident):
    page = page_of(client, viewer, incident)
    assert '<pre class="ops-error" id="incident-error">Traceback (most recent call last):\n  File' in page
    assert "\\n" not in page.split('id="incident-error">')[1].split("</pre>")[0]


def test_it_links_the_triggering_run_and_the_loader(client, viewer, incident):
    failed = Run.objects.get(status="FAILED")
    page = page_of(client, viewer, incident)
    assert f"/admin/signals_app/run/{failed.pk}/change/" in page
    assert "/admin/ops/loaders/SALES-DAILY/" in page  # the loader page: its runs, incidents and charts
    assert "?q=corr-42" in page


def test_it_folds_the_fingerprint_and_raw_metrics_into_internals(client, viewer, incident):
    page = page_of(client, viewer, incident)
    internals = page.split('<details class="incident-section incident-internals" id="internals">')[1]
    assert incident.fingerprint in internals
    assert page.count(incident.fingerprint) == 1
    assert "&quot;failed_runs&quot;: 1" in internals  # pretty-printed JSON, escaped for HTML


def test_a_viewer_gets_no_action_buttons_and_an_operator_gets_those_the_state_allows(
    client, viewer, operator, incident
):
    assert 'id="incident-actions"' not in page_of(client, viewer, incident)
    page = page_of(client, operator, incident)
    for button in ('id="do-acknowledge"', 'id="do-resolve"', 'id="silence-1h"', 'id="silence-4h"', 'id="do-comment"'):
        assert button in page
    Incident.objects.filter(pk=incident.pk).update(status=IncidentStatus.ACKNOWLEDGED)
    page = page_of(client, operator, incident)
    assert 'id="do-acknowledge"' not in page and 'id="do-resolve"' in page


def test_hidden_loader_fields_never_reach_the_page(client, viewer, incident):
    FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    page = page_of(client, viewer, incident)
    assert incident.loader.name not in page
    assert incident.loader.loader_code in page


def test_a_secret_in_the_error_text_is_masked(client, viewer, active_loader):
    incident = incident_of_failed_run(active_loader)
    Run.objects.filter(status="FAILED").update(error_text="connect failed: password=hunter2 at db:5432\nretry")
    assert "hunter2" not in page_of(client, viewer, incident)


# --- the list ---------------------------------------------------------------------------------------


@pytest.fixture
def one_of_each(incident) -> dict[str, Incident]:
    """The open incident, and one incident in each other status (copies with their own fingerprint)."""
    found = {"OPEN": incident}
    for status in ("ACKNOWLEDGED", "RESOLVED", "CLOSED"):
        copy = Incident.objects.get(pk=incident.pk)
        copy.pk = None
        copy.fingerprint = f"copy-{status}"
        copy.title = f"{status.lower()} one"
        copy.save()
        Incident.objects.filter(pk=copy.pk).update(status=status)
        found[status] = copy
    return found


def listed(client, user, query: str = "") -> set[int]:
    client.force_login(user)
    response = client.get(f"/admin/incidents/incident/{query}")
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_the_list_shows_open_and_acknowledged_incidents_by_default(client, viewer, one_of_each):
    assert listed(client, viewer) == {one_of_each["OPEN"].pk, one_of_each["ACKNOWLEDGED"].pk}


def test_the_list_shows_every_incident_when_asked_for_all(client, viewer, one_of_each):
    assert listed(client, viewer, "?status=all") == {i.pk for i in one_of_each.values()}
    assert listed(client, viewer, "?status=CLOSED") == {one_of_each["CLOSED"].pk}


def test_an_unknown_status_in_the_address_falls_back_to_the_open_ones(client, viewer, one_of_each):
    assert listed(client, viewer, "?status=nonsense") == {one_of_each["OPEN"].pk, one_of_each["ACKNOWLEDGED"].pk}


def test_the_list_says_what_it_shows_and_links_to_all(client, viewer, incident):
    client.force_login(viewer)
    page = client.get("/admin/incidents/incident/").content.decode()
    assert "Showing <strong>open and acknowledged</strong> incidents" in page and 'href="?status=all"' in page


def test_the_list_shows_severity_and_status_in_words_and_the_age(client, viewer, incident):
    Incident.objects.filter(pk=incident.pk).update(first_seen=timezone.now() - dt.timedelta(hours=3, minutes=12))
    client.force_login(viewer)
    page = client.get("/admin/incidents/incident/").content.decode()
    assert '<span class="badge badge-high">High</span>' in page
    assert '<span class="badge badge-open">Open</span>' in page
    assert "3 h 12 min" in page


# --- the chart's data --------------------------------------------------------------------------------


def test_the_chart_data_is_the_loaders_runs_around_the_opening(client, viewer, incident):
    client.force_login(viewer)
    response = client.get(f"/admin/incidents/incident/{incident.pk}/series/")
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["unit"] == "s" and len(data["x"]) == 3
    assert data["series"][0]["values"] == [1200.0, 1200.0, 1500.0]
    assert data["series"][1]["values"] == [None, None, 1500.0]  # the failed run on its own
    assert data["opened_at"] == round(incident.first_seen.timestamp(), 3)


def test_the_chart_data_refuses_a_silly_window_naming_it(client, viewer, incident):
    client.force_login(viewer)
    response = client.get(f"/admin/incidents/incident/{incident.pk}/series/?hours=1000")
    assert response.status_code == 400 and "hours" in json.loads(response.content)


@pytest.mark.parametrize("role", ["Viewer", "Editor", "Approver", "Operator", "Admin"])
def test_every_role_may_read_the_chart_data(client, make_user, incident, role):
    client.force_login(make_user(role))
    assert client.get(f"/admin/incidents/incident/{incident.pk}/series/").status_code == 200


def test_the_chart_data_needs_a_signed_in_user_who_may_read_incidents(client, make_user, incident):
    url = f"/admin/incidents/incident/{incident.pk}/series/"
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(make_user())  # staff, no role
    assert client.get(url).status_code == 403


def test_the_chart_leaves_out_a_contract_limit_the_reader_may_not_see(client, viewer, active_loader):
    at = timezone.now()
    Run.objects.create(
        loader=active_loader,
        status="SUCCEEDED",
        started_at=at - dt.timedelta(hours=1),
        finished_at=at,
        duration_seconds=3600,
    )
    rule = DetectionRule.objects.create(name="too long", kind="run_duration", window_seconds=7200)
    rule_evaluate(rule=rule, now=at)
    incident = Incident.objects.get(rule=rule)
    client.force_login(viewer)
    url = f"/admin/incidents/incident/{incident.pk}/series/"
    assert json.loads(client.get(url).content)["threshold"] == 45 * 60  # the contract's 45 minutes
    assert "Run duration 1 h &gt; 45 min allowed" in page_of(client, viewer, incident)
    FieldProtection.objects.create(
        model_label="loaders.loaderversion", field_name="max_duration_minutes", level="HIDDEN"
    )
    assert json.loads(client.get(url).content)["threshold"] is None
    page = page_of(client, viewer, incident)
    assert "Run duration 1 h &gt; (limit hidden) allowed" in page and "2700" not in page


# --- incidents without a rule or loader; the other kinds' series ---------------------------------------


def test_an_unreachable_source_incident_reads_without_rule_loader_or_chart_data(client, operator):
    from incidents.detection import source_unreachable

    incident, _action = source_unreachable("prometheus", "connection refused", timezone.now())
    page = page_of(client, operator, incident)
    assert "Data source unreachable: prometheus" in page
    assert "connection refused" in page  # the description says more than the title
    assert 'id="silence-1h"' not in page  # neither a loader nor a rule to silence
    client.force_login(operator)
    data = json.loads(client.get(f"/admin/incidents/incident/{incident.pk}/series/").content)
    assert data["x"] == [] and data["series"] == []


def test_the_failure_rate_chart_is_the_failed_share_per_ten_minutes(client, viewer, active_loader, rule_factory):
    from tests.incidents.conftest import add_signals

    at = timezone.now().replace(second=0, microsecond=0)
    add_signals(active_loader, failed=1, ok=3, at=at - dt.timedelta(minutes=40))
    add_signals(active_loader, failed=5, ok=5, at=at)
    rule = rule_factory("signal_failure_rate", threshold=5.0, window_seconds=300)
    rule_evaluate(rule=rule, now=at)
    incident = Incident.objects.get(rule=rule)
    client.force_login(viewer)
    data = json.loads(client.get(f"/admin/incidents/incident/{incident.pk}/series/").content)
    assert data["unit"] == "%" and data["threshold"] == 5.0
    assert data["series"][0]["values"] == [25.0, 50.0]
    assert "50 % of signals FAILED (5 of 10) &gt; 5 % allowed, over 5 min" in page_of(client, viewer, incident)


def test_the_metric_chart_is_the_signals_values_with_the_rule_threshold(client, viewer, active_loader, rule_factory):
    from tests.incidents.conftest import add_signals

    at = timezone.now()
    add_signals(active_loader, failed=0, ok=1, at=at - dt.timedelta(hours=1), key="row_lag", value=40.0)
    add_signals(active_loader, failed=0, ok=1, at=at, key="row_lag", value=140.0)
    add_signals(active_loader, failed=0, ok=1, at=at, key="other_key", value=999.0)
    params = {"signal_key": "row_lag", "aggregation": "max"}
    rule = rule_factory("metric_threshold", threshold=100.0, params=params, window_seconds=300)
    rule_evaluate(rule=rule, now=at)
    incident = Incident.objects.get(rule=rule)
    client.force_login(viewer)
    data = json.loads(client.get(f"/admin/incidents/incident/{incident.pk}/series/").content)
    assert data["series"] == [{"label": "row_lag", "values": [40.0, 140.0]}] and data["threshold"] == 100.0
    assert "max of row_lag 140 &gt; 100 over 5 min" in page_of(client, viewer, incident)


# --- the buttons promise only what the services do ------------------------------------------------------


@pytest.mark.parametrize("status", ["OPEN", "ACKNOWLEDGED", "RESOLVED", "CLOSED"])
@pytest.mark.parametrize("role", ["Viewer", "Operator", "Admin"])
def test_an_action_is_offered_exactly_when_its_service_accepts_it(make_user, incident, status, role):
    from etl_monitor.errors import ServiceError
    from incidents import services

    user = make_user(role)
    run = {
        "acknowledge": services.incident_acknowledge,
        "resolve": services.incident_resolve,
        "close": services.incident_close,
    }
    for action, service in run.items():
        Incident.objects.filter(pk=incident.pk).update(status=status)
        fresh = Incident.objects.get(pk=incident.pk)
        offered = action in services.incident_allowed_actions(user=user, incident=fresh)
        try:
            service(user=user, incident=fresh)
            accepted = True
        except ServiceError:
            accepted = False
        assert offered is accepted, f"{role} on {status}: {action} offered={offered}, accepted={accepted}"
    assert ("comment" in services.incident_allowed_actions(user=user, incident=fresh)) is (role != "Viewer")
