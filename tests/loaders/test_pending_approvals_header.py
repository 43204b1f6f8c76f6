"""The admin header tells people who may approve how many versions wait for them, and links to
that list; nobody else sees it."""

from __future__ import annotations

from loaders import services


def test_an_approver_sees_the_count_linked_to_the_waiting_list(client, approver, pending_loader):
    client.force_login(approver)
    html = client.get("/admin/").content.decode()
    assert (
        '<a id="pending-approvals" href="/admin/loaders/pendingapproval/" style="font-weight:bold">'
        "1 waiting for your approval</a>" in html
    )
    waiting = client.get("/admin/loaders/pendingapproval/").content.decode()
    assert "Review SALES-DAILY v2" in waiting


def test_an_editor_sees_no_count(client, editor, pending_loader):
    client.force_login(editor)
    assert "waiting for your approval" not in client.get("/admin/").content.decode()


def test_the_submitter_holding_both_roles_does_not_count_their_own_version(client, maker_checker, team):
    loader = services.loader_create(user=maker_checker, data={"loader_code": "MINE", "name": "m", "owner": team.slug})
    services.loader_version_submit(user=maker_checker, version=loader.open_version)
    client.force_login(maker_checker)
    assert "waiting for your approval" not in client.get("/admin/").content.decode()


def test_nothing_pending_shows_no_count(client, approver, active_loader):
    client.force_login(approver)
    assert 'id="pending-approvals"' not in client.get("/admin/").content.decode()


def test_the_count_follows_the_decisions(client, approver, approver2, pending_loader, new_loader, editor):
    other = new_loader("OTHER")
    services.loader_version_submit(user=editor, version=other.open_version)
    client.force_login(approver)
    assert "2 waiting for your approval" in client.get("/admin/").content.decode()
    services.loader_version_approve(user=approver2, version=other.open_version)
    assert "1 waiting for your approval" in client.get("/admin/").content.decode()
