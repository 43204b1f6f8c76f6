"""Junk in an admin form or a changelist's query string is the user's mistake, never a 500.

Django's autocomplete widget redraws a refused form by looking up the posted value as it came
("abc" for an integer key raised ValueError); etl_monitor.admin_input draws only values the
target field can hold, the form still says what was wrong. Changelists answer junk filters,
orderings and pages with their own error page or a redirect.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import site
from django.forms import ModelChoiceField
from django.test import Client
from django.urls import reverse

from incidents.models import Silence

# Values an integer (or slug) key cannot hold, or that name nothing.
JUNK_KEYS = ["abc", "1.5", "99999999999999999999999", "-1", "1 OR 1=1", "' ; --"]

WITH_AUTOCOMPLETE = sorted(
    (admin for admin in site._registry.values() if admin.autocomplete_fields), key=lambda a: a.opts.label
)


def test_the_admins_with_autocomplete_fields_are_all_checked_here():
    labels = {admin.opts.label for admin in WITH_AUTOCOMPLETE}
    assert labels >= {
        "signals_app.IngestToken",
        "incidents.Silence",
        "integrations.NotificationRule",
        "integrations.Capture",
        "loaders.Loader",
    }


def _model_rows(admin: Any) -> int:
    return admin.model._default_manager.count()


@pytest.mark.parametrize("junk", JUNK_KEYS)
@pytest.mark.parametrize("admin", WITH_AUTOCOMPLETE, ids=lambda a: a.opts.label)
def test_a_junk_autocomplete_value_redraws_the_form_with_an_error(client, admin_user, admin, junk):
    client.force_login(admin_user)
    before = _model_rows(admin)
    url = reverse(f"admin:{admin.opts.app_label}_{admin.opts.model_name}_add")
    data = {name: [junk, "1"] if _is_many(admin, name) else junk for name in admin.autocomplete_fields}

    response = client.post(url, data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert set(admin.autocomplete_fields) & set(form.errors), form.errors
    assert _model_rows(admin) == before


def _is_many(admin: Any, name: str) -> bool:
    return admin.opts.get_field(name).many_to_many


def test_a_junk_value_on_an_existing_silence_keeps_it_as_it_was(client, admin_user, active_loader):
    silence = Silence.objects.create(
        loader=active_loader, comment="planned", starts_at="2030-01-01T00:00Z", ends_at="2030-01-02T00:00Z"
    )
    client.force_login(admin_user)
    url = reverse("admin:incidents_silence_change", args=[silence.pk])
    response = client.post(
        url,
        {"loader": "abc", "comment": "changed", "starts_at": "2030-01-01 00:00:00", "ends_at": "2030-01-02 00:00:00"},
    )
    assert response.status_code == 200
    assert "loader" in response.context["adminform"].form.errors
    assert Silence.objects.get(pk=silence.pk).comment == "planned"


OUR_APPS = ("etl_monitor", "loaders", "signals_app", "incidents", "integrations")


def test_a_junk_key_in_any_related_field_of_our_admin_forms_is_that_fields_error(admin_user):
    client = Client(raise_request_exception=False)  # every failing field listed, not only the first
    client.force_login(admin_user)
    checked, failures = [], []
    for admin in site._registry.values():
        if admin.opts.app_label not in OUR_APPS:
            continue
        url = reverse(f"admin:{admin.opts.app_label}_{admin.opts.model_name}_add")
        page = client.get(url)
        if page.status_code != 200:
            continue  # no one adds these here (runs, signals, incidents…)
        related = [
            name for name, field in page.context["adminform"].form.fields.items() if isinstance(field, ModelChoiceField)
        ]
        for name in related:
            checked.append(f"{admin.opts.label}.{name}")
            for junk in JUNK_KEYS:
                response = client.post(url, {name: junk})
                errors = response.context["adminform"].form.errors if response.status_code == 200 else {}
                if response.status_code >= 500 or name not in errors:
                    failures.append((admin.opts.label, name, junk, response.status_code))
    assert {"incidents.DetectionRule.scope_loaders", "etl_monitor.FieldProtection.exempt_groups"} <= set(checked)
    assert failures == []


# --- changelists ---------------------------------------------------------------------------------

JUNK_PARAMS: list[dict[str, str]] = [
    {"o": "abc"},
    {"o": "999"},
    {"o": "-1.x.2"},
    {"o": "1.1.1.-1"},
    {"p": "abc"},
    {"p": "99999"},
    {"p": "-1"},
    {"q": "%_\\' OR 1=1 --"},
    {"q": "x" * 5000},
    {"e": "1"},
    {"all": "abc"},
    {"nonexistent_field": "1"},
    {"_to_field": "abc"},
    {"_popup": "abc"},
    {"id__gt": "abc"},
    {"pk__in": "abc"},
]


def _changelist_urls() -> list[tuple[str, str]]:
    return sorted(
        (admin.opts.label, reverse(f"admin:{admin.opts.app_label}_{admin.opts.model_name}_changelist"))
        for admin in site._registry.values()
    )


def _filter_params(client: Any, url: str) -> list[str]:
    """The query parameters the changelist's own filters read."""
    response = client.get(url)
    changelist = (response.context or {}).get("cl")
    if changelist is None:
        return []
    return [param for spec in changelist.filter_specs for param in spec.expected_parameters()]


@pytest.mark.parametrize(("label", "url"), _changelist_urls(), ids=[label for label, _ in _changelist_urls()])
def test_a_changelist_answers_junk_query_parameters_without_a_server_error(
    client, admin_user, active_loader, label, url
):
    client.force_login(admin_user)
    assert client.get(url).status_code in (200, 302)  # a singleton's list goes to its one row
    queries = [*JUNK_PARAMS, *({param: junk} for param in _filter_params(client, url) for junk in JUNK_KEYS)]
    failures = []
    for query in queries:
        response = client.get(url, query)
        if response.status_code >= 500:
            failures.append((query, response.status_code))
    assert failures == []


JUNK_OBJECT_IDS = ["abc", "1.5", "99999999999999999999999", "-1", "0"]


@pytest.mark.parametrize(("label", "url"), _changelist_urls(), ids=[label for label, _ in _changelist_urls()])
def test_an_object_page_answers_a_junk_object_id_without_a_server_error(admin_user, label, url):
    client = Client(raise_request_exception=False)  # every failing page listed, not only the first
    client.force_login(admin_user)
    failures = []
    for object_id in JUNK_OBJECT_IDS:
        for page in ("change/", "delete/", "history/", "history/1/", "history/abc/", "history/99999999999999999999/"):
            response = client.get(f"{url}{object_id}/{page}")
            if response.status_code >= 500:
                failures.append((object_id, page, response.status_code))
    assert failures == []


@pytest.mark.parametrize("admin", WITH_AUTOCOMPLETE, ids=lambda a: a.opts.label)
def test_the_autocomplete_lookup_answers_junk_parameters_without_a_server_error(client, admin_user, admin):
    client.force_login(admin_user)
    field = admin.autocomplete_fields[0]
    good = {"app_label": admin.opts.app_label, "model_name": admin.opts.model_name, "field_name": field}
    assert client.get("/admin/autocomplete/", good).status_code == 200
    queries = [
        {**good, "term": "%_' OR 1=1 --"},
        {**good, "term": "x" * 5000},
        {**good, "page": "abc"},
        {**good, "page": "99999"},
        {**good, "field_name": "nope"},
        {**good, "model_name": "nope"},
        {"app_label": "nope"},
        {},
    ]
    assert [q for q in queries if client.get("/admin/autocomplete/", q).status_code >= 500] == []


@pytest.mark.parametrize("field", ["minute", "hour", "day_of_month", "month_of_year", "day_of_week"])
def test_a_wrong_crontab_field_in_celery_beats_admin_is_that_fields_error(client, admin_user, field):
    """django-celery-beat's page computed its 'human readable' line from the wrong value and answered 500."""
    from django_celery_beat.models import CrontabSchedule

    client.force_login(admin_user)
    before = CrontabSchedule.objects.count()
    data = {
        "minute": "0",
        "hour": "2",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "UTC",
    }
    data[field] = "-1"

    response = client.post(reverse("admin:django_celery_beat_crontabschedule_add"), data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert b"Not a valid schedule" in response.content
    assert CrontabSchedule.objects.count() == before


@pytest.mark.parametrize("junk", JUNK_KEYS)
def test_a_junk_permission_or_group_id_on_the_user_and_group_pages_is_a_form_error(client, admin_user, junk):
    from django.contrib.auth.models import Group

    client.force_login(admin_user)
    groups = Group.objects.count()

    response = client.post(reverse("admin:auth_group_add"), {"name": "junk-group", "permissions": [junk]})

    assert response.status_code == 200
    assert "permissions" in response.context["adminform"].form.errors
    assert Group.objects.count() == groups
    change = reverse("admin:auth_user_change", args=[admin_user.pk])
    response = client.post(change, {"username": admin_user.username, "groups": [junk], "user_permissions": [junk]})
    assert response.status_code == 200
    assert {"groups", "user_permissions"} <= set(response.context["adminform"].form.errors)
