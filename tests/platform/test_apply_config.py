"""apply_config: strict, idempotent, all-or-nothing, recorded, four-eyes preserved."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from loaders.models import Loader, LoaderVersion, Team, VersionState
from tests.config_files import config_apply, config_refused

GOOD = """\
teams:
  - slug: finance
    name: Finance Analytics
    email: fin@example.com
loaders:
  - loader_code: SALES-DAILY
    name: Daily sales
    owner: finance
    tags: [sales, daily]
    schedule_cron: "30 2 * * *"
    schedule_timezone: Europe/Berlin
    expected_rows_min: 100
    expected_rows_max: 5000
  - loader_code: CRM-SYNC
    name: CRM sync
    owner: finance
    submit: true
"""


def apply(tmp_path, text: str, *args: str) -> str:
    return config_apply(tmp_path, text, *args)


@pytest.fixture
def roles(db):
    from etl_monitor.roles import roles_sync

    roles_sync()


def test_it_creates_teams_and_drafts(tmp_path, roles):
    out = apply(tmp_path, GOOD)
    assert "loaders SALES-DAILY: created" in out
    assert Team.objects.get(slug="finance").name == "Finance Analytics"
    sales = Loader.objects.get(loader_code="SALES-DAILY")
    assert sales.active_version is None
    assert sales.open_version.state == VersionState.DRAFT
    assert sorted(t.name for t in sales.tags.all()) == ["daily", "sales"]
    crm = Loader.objects.get(loader_code="CRM-SYNC")
    assert crm.open_version.state == VersionState.PENDING_APPROVAL
    assert crm.open_version.created_by.username == "config-as-code"
    history = sales.history.latest()
    assert history.history_change_reason == "apply_config config.yaml"


def test_applying_twice_changes_nothing(tmp_path, roles):
    apply(tmp_path, GOOD)
    before = (LoaderVersion.history.count(), Loader.history.count(), Team.history.count())
    out = apply(tmp_path, GOOD)
    assert "0 changed" in out
    assert (LoaderVersion.history.count(), Loader.history.count(), Team.history.count()) == before


def test_a_change_to_an_active_loader_becomes_a_draft_and_needs_approval(tmp_path, roles, approver):
    from loaders import services

    apply(tmp_path, GOOD)
    sales = Loader.objects.get(loader_code="SALES-DAILY")
    services.loader_version_submit(user=sales.open_version.created_by, version=sales.open_version)
    services.loader_version_approve(user=approver, version=sales.open_version)
    out = apply(tmp_path, GOOD.replace("expected_rows_max: 5000", "expected_rows_max: 9000"))
    assert "loaders SALES-DAILY: changed (expected_rows_max)" in out
    sales = Loader.objects.get(loader_code="SALES-DAILY")
    assert sales.active_version.expected_rows_max == 5000
    assert sales.open_version.expected_rows_max == 9000
    again = apply(tmp_path, GOOD.replace("expected_rows_max: 5000", "expected_rows_max: 9000"))
    assert "loaders SALES-DAILY: unchanged" in again
    assert sales.versions.count() == 2


def test_dry_run_writes_nothing(tmp_path, roles):
    out = apply(tmp_path, GOOD, "--dry-run")
    assert "would change" in out
    assert not Loader.objects.exists() and not Team.objects.exists()


def test_errors_name_the_key_path_and_line_and_nothing_is_written(tmp_path, roles):
    bad = GOOD.replace('schedule_cron: "30 2 * * *"', 'schedule_cron: "every day"').replace(
        "owner: finance\n    submit", "owner: nobody\n    submit"
    )
    bad += "  - loader_code: SALES-DAILY\n    name: dup\n    owner: finance\n    colour: blue\n"
    with pytest.raises(CommandError, match="error"):
        apply(tmp_path, bad)
    assert not Loader.objects.exists() and not Team.objects.exists()
    text = config_refused(tmp_path, bad)
    assert "line 10: loaders[0].schedule_cron:" in text
    assert "loaders[1].owner: Unknown team 'nobody'" in text
    assert "loaders[2].loader_code: Duplicate loader_code 'SALES-DAILY'" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The file is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("loaders: [\n", "Not valid YAML"),
        ("widgets: []\n", "widgets: Unknown section"),
        ("loaders: {a: 1}\n", "Must be a list"),
        ("loaders:\n  - name: x\n", "loaders[0].loader_code: Required"),
        ("loaders:\n  - !!python/object/apply:os.system ['true']\n", "Not valid YAML"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, roles, text, message):
    err = config_refused(tmp_path, text)
    assert message in err


def test_a_missing_file_is_a_clear_error(tmp_path, roles):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("apply_config", str(tmp_path / "nope.yaml"))


def test_acting_as_a_user_without_rights_is_refused(tmp_path, roles, viewer):
    err = config_refused(tmp_path, GOOD, "--as", viewer.username)
    assert "does not allow you to create teams" in err
    assert not Team.objects.exists()


def test_submitting_a_draft_equal_to_the_active_version_is_an_error_naming_the_loader(
    tmp_path, roles, approver, editor
):
    from loaders import services

    apply(tmp_path, GOOD)
    sales = Loader.objects.get(loader_code="SALES-DAILY")
    services.loader_version_submit(user=sales.open_version.created_by, version=sales.open_version)
    services.loader_version_approve(user=approver, version=sales.open_version)
    services.loader_draft_start(user=editor, loader=sales)  # a draft nobody changed
    err = config_refused(
        tmp_path, GOOD.replace("    expected_rows_max: 5000\n", "    expected_rows_max: 5000\n    submit: true\n")
    )
    assert "SALES-DAILY v2 has no differences from the active version v1" in err
    assert Loader.objects.get(loader_code="SALES-DAILY").open_version.state == VersionState.DRAFT
