"""The field-protection rules in the admin: an Admin changes a rule's level (the built-in secret
rule included, which may become HIDDEN but never LOCKED, and whose model and field stay fixed),
saves it, and reads its history; a user who may only view rules gets a read-only page; other
roles cannot open it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User

from etl_monitor.models import FieldProtection
from etl_monitor.protection import policy_for
from etl_monitor.roles import Role
from loaders.models import LoaderVersion

RULES = "/admin/etl_monitor/fieldprotection/"


@pytest.fixture
def builtin(db) -> FieldProtection:
    return FieldProtection.objects.get(model_label="loaders.loaderversion", field_name="connection_password")


@pytest.fixture
def rule_reader(make_user) -> User:
    """Someone granted only the view permission of rules (a site may grant single permissions)."""
    user = make_user(Role.VIEWER, username="rita-rule-reader")
    user.user_permissions.add(Permission.objects.get(codename="view_fieldprotection"))
    return User.objects.get(pk=user.pk)


def form_data(rule: FieldProtection, **changes: Any) -> dict[str, Any]:
    data = {
        "model_label": rule.model_label,
        "field_name": rule.field_name,
        "level": rule.level,
        "exempt_groups": [g.pk for g in rule.exempt_groups.all()],
        "note": rule.note,
    }
    return {**data, **changes}


def test_an_admin_opens_the_builtin_rule(client, admin_user, builtin):
    client.force_login(admin_user)
    page = client.get(f"{RULES}{builtin.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "loaders.loaderversion" in text and "connection_password" in text
    assert 'name="level"' in text  # the level is the one thing to change
    assert 'name="model_label"' not in text and 'name="field_name"' not in text  # fixed on a built-in rule


def test_an_admin_switches_the_builtin_rule_to_hidden(client, admin_user, builtin, editor):
    client.force_login(admin_user)
    response = client.post(
        f"{RULES}{builtin.pk}/change/",
        # a forged model or field is ignored: they are read-only on the built-in row
        {"model_label": "loaders.loader", "field_name": "name", "level": "HIDDEN", "note": "hide it"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = FieldProtection.objects.get(pk=builtin.pk)
    assert (rule.model_label, rule.field_name, rule.level, rule.note, rule.is_builtin) == (
        "loaders.loaderversion",
        "connection_password",
        "HIDDEN",
        "hide it",
        True,
    )
    assert "connection_password" in policy_for(editor, LoaderVersion).hidden
    history = client.get(f"{RULES}{builtin.pk}/history/")
    assert history.status_code == 200 and "HIDDEN" in history.content.decode()
    for record in rule.history.all():
        assert client.get(f"{RULES}{builtin.pk}/history/{record.history_id}/").status_code == 200


def test_the_builtin_rule_cannot_be_locked_and_the_form_says_why(client, admin_user, builtin):
    client.force_login(admin_user)
    response = client.post(f"{RULES}{builtin.pk}/change/", form_data(builtin, level="LOCKED"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["level"] == [
        "A secret is always masked (or hidden); it cannot be merely locked."
    ]
    assert FieldProtection.objects.get(pk=builtin.pk).level == "MASKED"


def test_an_admin_adds_changes_and_reads_the_history_of_a_rule(client, admin_user):
    client.force_login(admin_user)
    assert client.get(f"{RULES}add/").status_code == 200
    added = client.post(
        f"{RULES}add/",
        {
            "model_label": "loaders.loader",
            "field_name": "owner",
            "level": "LOCKED",
            "exempt_groups": [Group.objects.get(name=Role.EDITOR).pk],
            "note": "",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    rule = FieldProtection.objects.get(model_label="loaders.loader", field_name="owner")
    changed = client.post(f"{RULES}{rule.pk}/change/", form_data(rule, level="HIDDEN"))
    assert changed.status_code == 302
    assert FieldProtection.objects.get(pk=rule.pk).level == "HIDDEN"
    assert client.get(RULES).status_code == 200
    assert client.get(f"{RULES}{rule.pk}/history/").status_code == 200


def test_a_field_of_another_model_is_refused_naming_it(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        f"{RULES}add/", {"model_label": "loaders.loader", "field_name": "target", "level": "HIDDEN", "note": ""}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["field_name"] == [
        "loaders.loader has no protectable field 'target' (choose from: name, owner, tags, is_paused)."
    ]
    assert not FieldProtection.objects.filter(field_name="target").exists()


def test_a_rule_reader_sees_the_rules_read_only(client, rule_reader, builtin):
    client.force_login(rule_reader)
    assert client.get(RULES).status_code == 200
    page = client.get(f"{RULES}{builtin.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "connection_password" in text and "MASKED" in text
    assert 'name="level"' not in text
    assert client.post(f"{RULES}{builtin.pk}/change/", form_data(builtin, level="HIDDEN")).status_code == 403
    assert client.get(f"{RULES}{builtin.pk}/history/").status_code == 200
    assert FieldProtection.objects.get(pk=builtin.pk).level == "MASKED"


@pytest.mark.parametrize("role", ["viewer", "editor", "approver", "operator"])
def test_other_roles_cannot_open_the_rules(request, client, role, builtin):
    client.force_login(request.getfixturevalue(role))
    assert client.get(RULES).status_code == 403
    assert client.get(f"{RULES}{builtin.pk}/change/").status_code == 403
