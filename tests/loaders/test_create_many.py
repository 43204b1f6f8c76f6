"""loaders_create_many: many loaders at once, all or none, in a fixed number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from etl_monitor.errors import InvalidInput, PermissionRefused
from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState


def rows(count: int, **data) -> list[dict]:
    return [
        {"loader_code": f"MANY-{i:03d}", "name": f"Many {i}", "owner": "data-platform", "tags": ["bulk"], **data}
        for i in range(count)
    ]


def queries(work) -> int:
    with CaptureQueriesContext(connection) as captured:
        work()
    return len(captured)


def test_it_creates_drafts_in_the_same_queries_for_one_row_or_many(editor, team):
    services.loader_create(user=editor, data={"loader_code": "FIRST", "name": "f", "owner": "data-platform"})
    one = queries(lambda: services.loaders_create_many(user=editor, rows=rows(1, loader_code="ONE")))
    # 20 rows: within one insert on every database (SQLite takes at most 999 values in one).
    many = queries(lambda: services.loaders_create_many(user=editor, rows=rows(20)))
    assert many == one  # the role's permissions and protection rules were read by the first create
    assert Loader.objects.count() == 22
    assert set(LoaderVersion.objects.values_list("state", "number")) == {(VersionState.DRAFT, 1)}
    assert set(Loader.tags.through.objects.values_list("tag__name", flat=True)) == {"bulk"}


def test_submit_creates_them_pending_and_submitted_by_the_maker(maker_checker, team):
    services.loaders_create_many(user=maker_checker, rows=rows(2), submit=True, reason="From a file")
    version = LoaderVersion.objects.get(loader__loader_code="MANY-001")
    assert (version.state, version.submitted_by, version.submitted_at is not None) == (
        VersionState.PENDING_APPROVAL,
        maker_checker,
        True,
    )
    assert version.history.get().history_change_reason == "From a file and submitted for approval"
    with pytest.raises(PermissionRefused, match="You submitted this version"):
        services.loader_version_approve(user=maker_checker, version=version)


def test_one_bad_row_refuses_them_all_naming_every_bad_row(editor, team, new_loader):
    new_loader("TAKEN")
    batch = rows(4)
    batch[1]["owner"] = "nobody"
    batch[2]["loader_code"] = "TAKEN"
    batch[3]["loader_code"] = batch[0]["loader_code"]
    with pytest.raises(services.RowsRefused) as refused:
        services.loaders_create_many(user=editor, rows=batch)
    assert sorted(refused.value.refusals) == [1, 2, 3]
    assert "Unknown team 'nobody'" in refused.value.refusals[1].errors["owner"][0]
    assert "already exists" in refused.value.refusals[2].errors["loader_code"][0]
    assert "more than once" in refused.value.refusals[3].errors["loader_code"][0]
    assert list(Loader.objects.values_list("loader_code", flat=True)) == ["TAKEN"]


def test_the_check_refuses_as_the_write_would_and_writes_nothing(editor, team):
    batch = [*rows(2), {"loader_code": "X", "name": "x", "owner": "data-platform", "colour": "red"}]
    with pytest.raises(services.RowsRefused) as refused:
        services.loaders_create_check(user=editor, rows=batch)
    assert list(refused.value.refusals) == [2]
    assert refused.value.refusals[2].errors == {"colour": ["Unknown field."]}
    services.loaders_create_check(user=editor, rows=rows(2))  # fine: no refusal
    assert not Loader.objects.exists()


def test_loader_create_raises_its_rows_refusal(editor, team):
    with pytest.raises(InvalidInput) as refused:
        services.loader_create(user=editor, data={"loader_code": "A1", "name": "", "owner": "data-platform"})
    assert set(refused.value.errors) == {"name"}


def test_a_long_reason_is_cut_to_what_history_holds(maker_checker, team):
    reason = "Imported from " + "a-very-long-file-name-" * 5 + ".xlsx"
    services.loaders_create_many(user=maker_checker, rows=rows(1), reason=reason, submit=True)
    version = LoaderVersion.objects.get()
    assert version.history.get().history_change_reason == (reason + " and submitted for approval")[:100]
    assert Loader.objects.get().history.get().history_change_reason == reason[:100]
