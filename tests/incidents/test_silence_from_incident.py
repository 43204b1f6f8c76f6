"""Silences made from an incident (this loader / this rule, 1 h, 4 h, until a time), by service and page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused
from incidents.models import EventKind, Incident, Silence
from incidents.silences import silence_for_incident, silence_matching
from tests.incidents.test_incident_page import incident_of_failed_run

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def incident(active_loader) -> Incident:
    return incident_of_failed_run(active_loader, at=NOW)


def test_it_silences_the_loader_for_an_hour_and_says_so_on_the_timeline(operator, incident):
    silence = silence_for_incident(user=operator, incident=incident, scope="loader", hours=1, now=NOW)
    assert (silence.loader_id, silence.rule_id) == (incident.loader_id, None)
    assert (silence.starts_at, silence.ends_at) == (NOW, NOW + dt.timedelta(hours=1))
    assert silence.created_by == operator
    entry = incident.events.get(kind=EventKind.SILENCED)
    assert entry.actor == operator and entry.data["silence"] == silence.pk
    assert entry.message.startswith("Silenced this loader (SALES-DAILY) for 1 h, until 2026-12-03 13:00")


def test_it_silences_the_rule_until_a_time(operator, incident):
    until = NOW + dt.timedelta(hours=8)
    silence = silence_for_incident(user=operator, incident=incident, scope="rule", until=until, now=NOW)
    assert (silence.rule_id, silence.loader_id, silence.ends_at) == (incident.rule_id, None, until)
    assert "this rule (Run failed (page)) for 8 h" in incident.events.get(kind=EventKind.SILENCED).message


def test_the_silence_matches_the_incident_while_it_lasts_and_not_after(operator, incident):
    silence_for_incident(user=operator, incident=incident, scope="loader", hours=4, now=NOW)
    assert silence_matching(incident, NOW + dt.timedelta(hours=3)) is not None
    assert silence_matching(incident, NOW + dt.timedelta(hours=4)) is None


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"scope": "team", "hours": 1}, "scope"),
        ({"scope": "loader"}, "until"),
        ({"scope": "loader", "hours": 1, "until": NOW + dt.timedelta(hours=1)}, "until"),
        ({"scope": "loader", "hours": 0}, "hours"),
        ({"scope": "loader", "hours": 24 * 15}, "hours"),
        ({"scope": "loader", "until": NOW - dt.timedelta(minutes=1)}, "until"),
        ({"scope": "loader", "until": NOW + dt.timedelta(days=30)}, "until"),
        ({"scope": "loader", "until": dt.datetime(2026, 12, 3, 14, 0)}, "until"),  # no time zone
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(operator, incident, given, field):
    with pytest.raises(InvalidInput) as error:
        silence_for_incident(user=operator, incident=incident, now=NOW, **given)
    assert field in error.value.errors
    assert not Silence.objects.exists() and not incident.events.filter(kind=EventKind.SILENCED).exists()


def test_an_incident_without_a_loader_can_only_silence_its_rule(operator, incident):
    Incident.objects.filter(pk=incident.pk).update(loader=None)
    incident.refresh_from_db()
    with pytest.raises(InvalidInput) as error:
        silence_for_incident(user=operator, incident=incident, scope="loader", hours=1, now=NOW)
    assert "silence its rule instead" in error.value.errors["scope"][0]


@pytest.mark.parametrize("role", ["Viewer", "Editor", "Approver"])
def test_roles_without_silence_rights_are_refused(make_user, incident, role):
    with pytest.raises(PermissionRefused):
        silence_for_incident(user=make_user(role), incident=incident, scope="loader", hours=1, now=NOW)
    assert not Silence.objects.exists()


# --- the page's endpoint ------------------------------------------------------------------------------


def post_silence(client, user, incident: Incident, data: dict):
    client.force_login(user)
    return client.post(f"/admin/incidents/incident/{incident.pk}/silence/", data, follow=True)


@pytest.mark.parametrize(
    ("role", "allowed"), [("Viewer", False), ("Editor", False), ("Operator", True), ("Admin", True)]
)
def test_the_silence_endpoint_obeys_each_role(client, make_user, incident, role, allowed):
    response = post_silence(client, make_user(role), incident, {"scope": "loader", "hours": "4"})
    assert response.status_code == 200
    assert Silence.objects.exists() is allowed
    if not allowed:
        assert "does not allow you to manage silences" in response.content.decode()


def test_the_silence_endpoint_takes_a_local_end_time(client, operator, incident, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    until = (timezone.now() + dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=1)))
    post_silence(client, operator, incident, {"scope": "rule", "until": until.strftime("%Y-%m-%dT%H:%M")})
    silence = Silence.objects.get()
    assert silence.rule_id == incident.rule_id
    assert abs((silence.ends_at - until.replace(second=0, microsecond=0)).total_seconds()) < 3601  # DST-agnostic


def test_the_silence_endpoint_names_an_unreadable_end_time(client, operator, incident):
    response = post_silence(client, operator, incident, {"scope": "loader", "until": "next tuesday"})
    assert "Until: Must be a date and time" in response.content.decode()
    assert not Silence.objects.exists()


def test_the_silence_endpoint_refuses_a_get(client, operator, incident):
    client.force_login(operator)
    assert client.get(f"/admin/incidents/incident/{incident.pk}/silence/").status_code == 405
