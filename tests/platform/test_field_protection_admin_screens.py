"""What an Admin sees on the field-protection screens: the built-in rule's page starts with the
model and field it protects and says it is built in; the note has room to be read; the list's
bulk delete refuses a built-in rule by saying so (instead of "your account doesn't have
permission") and deletes nothing."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from etl_monitor.models import FieldProtection

RULES = "/admin/etl_monitor/fieldprotection/"


@pytest.fixture
def builtin(db) -> FieldProtection:
    return FieldProtection.objects.get(model_label="loaders.loaderversion", field_name="connection_password")


def row_order(page: str) -> list[str]:
    return re.findall(r'class="form-row[^"]*field-(\w+)', page)


def test_the_builtin_rule_page_starts_with_its_model_and_field(client, admin_user: User, builtin) -> None:
    client.force_login(admin_user)
    page = client.get(f"{RULES}{builtin.pk}/change/").content.decode()
    order = row_order(page)
    assert order[:4] == ["model_label", "field_name", "is_builtin", "level"], order
    assert "A default rule for secrets; it cannot be weakened." in page  # why it has no Delete button


def test_a_rule_page_keeps_the_same_order(client, admin_user: User) -> None:
    client.force_login(admin_user)
    order = row_order(client.get(f"{RULES}add/").content.decode())
    assert order[:3] == ["model_label", "field_name", "level"], order


def test_the_note_input_is_wide(client, admin_user: User, builtin) -> None:
    client.force_login(admin_user)
    page = client.get(f"{RULES}{builtin.pk}/change/").content.decode()
    note = re.search(r"<input[^>]*name=\"note\"[^>]*>", page).group(0)
    assert "vLargeTextField" in note


def test_bulk_delete_of_the_builtin_rule_says_why_and_deletes_nothing(client, admin_user: User, builtin) -> None:
    other = FieldProtection.objects.create(model_label="loaders.loader", field_name="owner", level="LOCKED")
    client.force_login(admin_user)
    answer = client.post(RULES, {"action": "delete_selected", "_selected_action": [builtin.pk, other.pk]}, follow=True)
    page = answer.content.decode()
    assert "doesn&#x27;t have permission" not in page and "have permission" not in page
    assert "Built-in rules cannot be deleted (change their level instead)" in page
    assert FieldProtection.objects.filter(pk__in=[builtin.pk, other.pk]).count() == 2


def test_bulk_delete_of_other_rules_still_asks_and_deletes(client, admin_user: User) -> None:
    rule = FieldProtection.objects.create(model_label="loaders.loader", field_name="owner", level="LOCKED")
    client.force_login(admin_user)
    confirm = client.post(RULES, {"action": "delete_selected", "_selected_action": [rule.pk]})
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    done = client.post(RULES, {"action": "delete_selected", "_selected_action": [rule.pk], "post": "yes"})
    assert done.status_code == 302
    assert not FieldProtection.objects.filter(pk=rule.pk).exists()
