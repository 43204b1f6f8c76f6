"""History: who changed what, when and why — and never a secret's value."""

from __future__ import annotations

from loaders import services
from loaders.models import Loader
from tests.conftest import version


def test_every_step_is_recorded_with_user_and_reason(pending_loader, editor, approver):
    services.loader_version_approve(user=approver, version=version(pending_loader, 2), comment="ok for month end")
    v2 = version(pending_loader, 2)
    records = list(
        v2.history.order_by("history_date").values_list("state", "history_user__username", "history_change_reason")
    )
    assert records[0][:2] == ("DRAFT", "eddie-editor")
    assert records[0][2] == "Draft started from v1"
    assert ("DRAFT", "eddie-editor", "Changed max_duration_minutes") in records
    assert ("PENDING_APPROVAL", "eddie-editor", "Submitted for approval") in records
    assert records[-1] == ("ACTIVE", "abby-approver", "Approved: ok for month end")
    v1_last = version(pending_loader, 1).history.latest()
    assert (v1_last.state, v1_last.history_user, v1_last.history_change_reason) == (
        "SUPERSEDED",
        approver,
        "Superseded by v2",
    )


def test_rejection_reason_is_in_history(pending_loader, approver):
    services.loader_version_reject(user=approver, version=version(pending_loader, 2), reason="too long")
    latest = version(pending_loader, 2).history.latest()
    assert (latest.history_user, latest.history_change_reason) == (approver, "Rejected: too long")


def test_loader_identity_changes_are_recorded(active_loader, editor):
    services.loader_update(user=editor, loader=active_loader, data={"name": "Sales (daily)", "is_paused": True})
    latest = Loader.objects.get(pk=active_loader.pk).history.latest()
    assert latest.history_user == editor
    assert latest.history_change_reason == "Changed name, is_paused"
    delta = latest.diff_against(latest.prev_record)
    assert {c.field for c in delta.changes} == {"name", "is_paused"}


def test_first_approval_locks_the_code_in_history(active_loader, approver):
    reasons = list(Loader.objects.get(pk=active_loader.pk).history.values_list("history_change_reason", flat=True))
    assert any("loader code locked" in (r or "") for r in reasons)


def test_history_pages_show_diffs_and_mask_secrets(client, admin_user, new_loader, editor):
    marker = "HIST-SECRET-55120"
    loader = new_loader(connection_password="first-" + marker)
    draft = loader.open_version
    services.loader_version_update(
        user=editor, version=draft, data={"connection_password": marker, "grace_minutes": 33}
    )
    client.force_login(admin_user)
    page = client.get(f"/admin/loaders/loaderversion/{draft.pk}/history/")
    html = page.content.decode()
    assert page.status_code == 200
    assert marker not in html
    assert "(changed)" in html  # the secret changed, without its value
    assert "33" in html  # a readable diff of the ordinary field
    for record in draft.history.all():
        detail = client.get(f"/admin/loaders/loaderversion/{draft.pk}/history/{record.history_id}/")
        assert detail.status_code == 200
        assert marker not in detail.content.decode()
