"""Two approvers pressing Approve at the same moment, on PostgreSQL with real threads and connections."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from etl_monitor.errors import PermissionRefused, StateConflict
from loaders import services
from loaders.models import LoaderVersion, VersionState
from tests.conftest import version

pytestmark = pytest.mark.django_db(transaction=True)


def _approve_concurrently(users, pending, rounds_barrier):
    outcomes: dict[str, object] = {}

    def run(user):
        try:
            rounds_barrier.wait(timeout=10)
            services.loader_version_approve(user=user, version=pending)
            outcomes[user.username] = "approved"
        except (StateConflict, PermissionRefused) as exc:
            outcomes[user.username] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


@pytest.mark.services
def test_two_concurrent_approvals_activate_once(require_postgres, pending_loader, approver, approver2):
    pending = version(pending_loader, 2)
    # Hold the loader row lock is not needed: the barrier releases both threads together,
    # each on its own database connection, so they race for the same row lock.
    outcomes = _approve_concurrently([approver, approver2], pending, threading.Barrier(2))

    assert sorted(str(v) if v == "approved" else "refused" for v in outcomes.values()) == ["approved", "refused"]
    refusal = next(v for v in outcomes.values() if v != "approved")
    winner = next(name for name, v in outcomes.items() if v == "approved")
    assert isinstance(refusal, StateConflict)
    assert f"already approved by {winner}" in refusal.message

    versions = {v.number: v for v in LoaderVersion.objects.filter(loader=pending_loader)}
    assert versions[2].state == VersionState.ACTIVE
    assert versions[1].state == VersionState.SUPERSEDED
    assert LoaderVersion.objects.filter(loader=pending_loader, state=VersionState.ACTIVE).count() == 1
    # Superseded exactly once: one history row records that transition.
    superseded = versions[1].history.filter(state=VersionState.SUPERSEDED).count()
    assert superseded == 1
    assert connection.vendor == "postgresql"


@pytest.mark.services
def test_many_rounds_of_concurrent_approvals_never_leave_two_or_zero_active(
    require_postgres, pending_loader, editor, approver, approver2
):
    for _ in range(5):
        pending = pending_loader.versions.get(state=VersionState.PENDING_APPROVAL)
        outcomes = _approve_concurrently([approver, approver2], pending, threading.Barrier(2))
        assert list(outcomes.values()).count("approved") == 1
        assert LoaderVersion.objects.filter(loader=pending_loader, state=VersionState.ACTIVE).count() == 1
        draft = services.loader_draft_start(user=editor, loader=pending_loader)
        services.loader_version_update(user=editor, version=draft, data={"grace_minutes": draft.grace_minutes + 1})
        services.loader_version_submit(user=editor, version=draft)
