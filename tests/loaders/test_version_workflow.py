"""The version state machine, driven through the services every entry point uses."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from etl_monitor.errors import InvalidInput, PermissionRefused, StateConflict
from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState
from tests.conftest import version


def test_it_creates_a_loader_with_a_draft_v1(new_loader, editor):
    loader = new_loader()
    assert loader.active_version is None
    draft = loader.open_version
    assert (draft.number, draft.state, draft.created_by) == (1, VersionState.DRAFT, editor)
    assert draft.schedule_cron == "30 2 * * *"


def test_it_walks_draft_pending_active(new_loader, editor, approver):
    loader = new_loader()
    v1 = services.loader_version_submit(user=editor, version=loader.open_version, comment="ready")
    assert v1.state == VersionState.PENDING_APPROVAL
    assert v1.submitted_by == editor
    v1 = services.loader_version_approve(user=approver, version=v1, comment="looks right")
    assert v1.state == VersionState.ACTIVE
    assert (v1.decided_by, v1.decision_comment) == (approver, "looks right")
    loader.refresh_from_db()
    assert loader.first_activated_at is not None
    assert Loader.objects.get(pk=loader.pk).active_version == v1


def test_it_supersedes_the_previous_active_version(pending_loader, approver2):
    v2 = version(pending_loader, 2)
    services.loader_version_approve(user=approver2, version=v2)
    assert version(pending_loader, 1).state == VersionState.SUPERSEDED
    assert version(pending_loader, 1).superseded_at is not None
    assert version(pending_loader, 2).state == VersionState.ACTIVE
    assert LoaderVersion.objects.filter(loader=pending_loader, state=VersionState.ACTIVE).count() == 1


def test_monitoring_keeps_the_active_version_while_a_draft_is_pending(pending_loader):
    loader = Loader.objects.get(pk=pending_loader.pk)
    assert loader.active_version.number == 1
    assert loader.active_version.max_duration_minutes == 45
    assert loader.open_version.max_duration_minutes == 60
    assert loader.has_pending_approval


def test_it_rejects_with_a_reason_and_revises_as_a_new_draft(pending_loader, editor, approver):
    v2 = services.loader_version_reject(user=approver, version=version(pending_loader, 2), reason="60 is too long")
    assert (v2.state, v2.decision_comment, v2.decided_by) == (VersionState.REJECTED, "60 is too long", approver)
    assert version(pending_loader, 1).state == VersionState.ACTIVE
    v3 = services.loader_draft_start(user=editor, loader=pending_loader, base=v2)
    assert (v3.number, v3.state, v3.based_on) == (3, VersionState.DRAFT, v2)
    assert v3.max_duration_minutes == 60  # revision starts from the rejected content


def test_a_new_draft_starts_from_the_active_version_by_default(active_loader, editor):
    draft = services.loader_draft_start(user=editor, loader=active_loader)
    assert (draft.number, draft.based_on.number) == (2, 1)
    assert draft.expected_rows_max == 1000


def test_starting_a_draft_when_one_is_open_returns_it(active_loader, editor):
    first = services.loader_draft_start(user=editor, loader=active_loader)
    again = services.loader_draft_start(user=editor, loader=active_loader)
    assert first.pk == again.pk


def test_it_refuses_a_draft_while_a_version_is_pending(pending_loader, editor):
    with pytest.raises(StateConflict, match="pending approval"):
        services.loader_draft_start(user=editor, loader=pending_loader)
    with pytest.raises(StateConflict, match="pending approval"):
        services.loader_edit(user=editor, loader=pending_loader, data={"grace_minutes": 5})


def test_it_refuses_a_draft_based_on_a_superseded_version(pending_loader, editor, approver):
    services.loader_version_approve(user=approver, version=version(pending_loader, 2))
    with pytest.raises(StateConflict, match="active or a rejected"):
        services.loader_draft_start(user=editor, loader=pending_loader, base=version(pending_loader, 1))


def test_withdraw_returns_a_pending_version_to_draft(pending_loader, editor):
    v2 = services.loader_version_withdraw(user=editor, version=version(pending_loader, 2))
    assert v2.state == VersionState.DRAFT
    assert v2.submitted_by is None
    services.loader_version_update(user=editor, version=v2, data={"max_duration_minutes": 50})
    assert version(pending_loader, 2).max_duration_minutes == 50


@pytest.mark.parametrize(
    ("state_fixture", "action", "expected"),
    [
        # (fixture giving the loader, action on its newest version, error)
        ("new_loader_obj", "approve", StateConflict),  # DRAFT cannot be approved
        ("new_loader_obj", "reject", StateConflict),  # DRAFT cannot be rejected
        ("new_loader_obj", "withdraw", StateConflict),  # DRAFT is not pending
        ("pending_loader", "submit", StateConflict),  # already pending
        ("pending_loader", "edit", StateConflict),  # pending is frozen
        ("active_loader", "submit", StateConflict),
        ("active_loader", "approve", StateConflict),
        ("active_loader", "reject", StateConflict),
        ("active_loader", "edit", StateConflict),
        ("active_loader", "withdraw", StateConflict),
    ],
)
def test_it_refuses_transitions_from_the_wrong_state(request, state_fixture, action, expected, editor2, approver2):
    loader = request.getfixturevalue(state_fixture)
    newest = loader.versions.order_by("-number").first()
    actor = approver2 if action in ("approve", "reject") else editor2
    call = {
        "submit": lambda: services.loader_version_submit(user=actor, version=newest),
        "withdraw": lambda: services.loader_version_withdraw(user=actor, version=newest),
        "approve": lambda: services.loader_version_approve(user=actor, version=newest),
        "reject": lambda: services.loader_version_reject(user=actor, version=newest, reason="no"),
        "edit": lambda: services.loader_version_update(user=actor, version=newest, data={"grace_minutes": 1}),
    }[action]
    before = newest.state
    with pytest.raises(expected):
        call()
    assert LoaderVersion.objects.get(pk=newest.pk).state == before


@pytest.fixture
def new_loader_obj(new_loader):
    return new_loader()


def test_superseded_and_rejected_versions_accept_no_transition(pending_loader, editor, approver, approver2):
    services.loader_version_reject(user=approver, version=version(pending_loader, 2), reason="no")
    v2 = version(pending_loader, 2)
    for call in (
        lambda: services.loader_version_submit(user=editor, version=v2),
        lambda: services.loader_version_approve(user=approver2, version=v2),
        lambda: services.loader_version_withdraw(user=editor, version=v2),
    ):
        with pytest.raises(StateConflict):
            call()
    assert version(pending_loader, 2).state == VersionState.REJECTED


def test_reject_requires_a_reason(pending_loader, approver):
    with pytest.raises(InvalidInput) as exc:
        services.loader_version_reject(user=approver, version=version(pending_loader, 2), reason="   ")
    assert "reason" in exc.value.errors
    assert version(pending_loader, 2).state == VersionState.PENDING_APPROVAL


def test_the_state_field_cannot_be_assigned_directly(active_loader):
    v1 = version(active_loader, 1)
    with pytest.raises(AttributeError):
        v1.state = VersionState.DRAFT


def test_the_database_allows_only_one_open_version_per_loader(active_loader, editor):
    services.loader_draft_start(user=editor, loader=active_loader)
    with pytest.raises(IntegrityError), transaction.atomic():
        LoaderVersion.objects.create(loader=active_loader, number=9)  # another DRAFT


def test_the_database_allows_only_one_active_version_per_loader(active_loader):
    with pytest.raises(IntegrityError), transaction.atomic():
        LoaderVersion.objects.create(loader=active_loader, number=9, state=VersionState.ACTIVE)


def test_the_database_refuses_min_rows_above_max(active_loader):
    with pytest.raises(IntegrityError), transaction.atomic():
        LoaderVersion.objects.filter(loader=active_loader).update(expected_rows_min=5000)


def test_roles_limit_each_step(new_loader, viewer, approver, editor):
    loader = new_loader()
    draft = loader.open_version
    with pytest.raises(PermissionRefused, match="submit"):
        services.loader_version_submit(user=approver, version=draft)
    with pytest.raises(PermissionRefused, match="edit"):
        services.loader_version_update(user=viewer, version=draft, data={"grace_minutes": 1})
    pending = services.loader_version_submit(user=editor, version=draft)
    with pytest.raises(PermissionRefused, match="approve"):
        services.loader_version_approve(user=viewer, version=pending)
    with pytest.raises(PermissionRefused, match="reject"):
        services.loader_version_reject(user=editor, version=pending, reason="x")


def test_an_inactive_user_can_do_nothing(new_loader, make_user):
    from etl_monitor.roles import Role

    ghost = make_user(Role.ADMIN, username="ghost", is_active=False)
    with pytest.raises(PermissionRefused):
        services.loader_create(user=ghost, data={"loader_code": "X1", "name": "x", "owner": "data-platform"})


def test_after_a_rejection_the_next_draft_revises_the_rejected_content(pending_loader, editor, approver):
    services.loader_version_reject(user=approver, version=version(pending_loader, 2), reason="make it 50")
    v3 = services.loader_draft_start(user=editor, loader=pending_loader)
    assert (v3.based_on.number, v3.max_duration_minutes) == (2, 60)


def test_only_the_submitter_or_an_admin_withdraws(pending_loader, editor2, admin_user):
    with pytest.raises(PermissionRefused, match="Only the person who submitted"):
        services.loader_version_withdraw(user=editor2, version=version(pending_loader, 2))
    assert services.loader_version_withdraw(user=admin_user, version=version(pending_loader, 2)).state == "DRAFT"
