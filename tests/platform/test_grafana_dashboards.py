"""``manage.py grafana_dashboards``: the shipped dashboards written for this site, the links into
ETL Monitor pointing at ETL_MONITOR_BASE_URL and every other byte as shipped; ``--check``."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from etl_monitor.errors import InvalidInput
from etl_monitor.grafana_dashboards import DASHBOARDS_SOURCE, grafana_dashboard_render

SHIPPED = {path.name: path.read_text() for path in sorted(DASHBOARDS_SOURCE.glob("*.json"))}
SITE = "https://etl.example.com"


def url_variable(text: str) -> dict[str, Any]:
    dashboard = json.loads(text)
    return next(v for v in dashboard["templating"]["list"] if v["name"] == "etl_monitor_url")


def write(output: Path, **options: Any) -> str:
    out = io.StringIO()
    call_command("grafana_dashboards", output=str(output), stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def site(settings: Any) -> str:
    settings.ETL_MONITOR_BASE_URL = SITE
    return SITE


def test_it_writes_every_dashboard_with_the_site_in_its_url_variable(tmp_path: Path, site: str) -> None:
    printed = write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SHIPPED)  # no temporary file left over
    for name in SHIPPED:
        variable = url_variable((tmp_path / name).read_text())
        assert variable["query"] == site
        assert variable["current"] == {"text": site, "value": site}
        assert [(o["text"], o["value"]) for o in variable["options"]] == [(site, site)]
        assert f"Wrote {tmp_path / name}" in printed
    assert f"point at {site}." in printed


def test_it_changes_nothing_else_byte_for_byte(tmp_path: Path, site: str) -> None:
    write(tmp_path)
    for name, shipped in SHIPPED.items():
        written = (tmp_path / name).read_text()
        old = url_variable(shipped)["query"]
        assert written.replace(json.dumps(site), json.dumps(old)) == shipped
        changed = [a for a, b in zip(shipped.splitlines(), written.splitlines(), strict=True) if a != b]
        assert len(changed) == 5, changed  # query, current text and value, the option's text and value
        assert all(old in line for line in changed)


def test_it_strips_the_trailing_slash(tmp_path: Path, settings: Any) -> None:
    settings.ETL_MONITOR_BASE_URL = "https://example.com/etl-monitor/"
    write(tmp_path)
    for name in SHIPPED:
        assert url_variable((tmp_path / name).read_text())["query"] == "https://example.com/etl-monitor"


def test_the_files_are_readable_by_grafana_running_as_another_user(tmp_path: Path, site: str) -> None:
    write(tmp_path)
    assert {oct((tmp_path / name).stat().st_mode & 0o777) for name in SHIPPED} == {"0o644"}


def test_it_leaves_other_files_of_the_directory_alone(tmp_path: Path, site: str) -> None:
    (tmp_path / "someone-elses.json").write_text("{}")
    write(tmp_path)
    assert (tmp_path / "someone-elses.json").read_text() == "{}"


@pytest.mark.parametrize("base_url", ["ftp://etl.example.com", "etl.example.com", "", "https://", "https://x/?a=1"])
def test_it_refuses_a_base_url_that_is_no_http_url(tmp_path: Path, settings: Any, base_url: str) -> None:
    settings.ETL_MONITOR_BASE_URL = base_url
    with pytest.raises(CommandError, match=r"ETL_MONITOR_BASE_URL: .* is not an http\(s\) URL"):
        write(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_a_directory_that_does_not_exist(tmp_path: Path, site: str) -> None:
    with pytest.raises(CommandError, match=re.escape(f"output: {tmp_path / 'grafana'} does not exist")):
        write(tmp_path / "grafana")


def test_it_refuses_a_file_for_a_directory(tmp_path: Path, site: str) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CommandError, match=re.escape(f"output: {tmp_path / 'a-file'} is not a directory")):
        write(tmp_path / "a-file")


def test_it_says_when_it_cannot_write(site: str) -> None:
    # /proc refuses new files even to root, who may write into any mode-0555 directory.
    expected = "Cannot write to /proc" if os.geteuid() == 0 else "/proc is not writable"
    with pytest.raises(CommandError, match=expected):
        write(Path("/proc"))


def test_check_names_every_missing_file(tmp_path: Path, site: str) -> None:
    with pytest.raises(CommandError) as refused:
        write(tmp_path, check=True)
    assert refused.value.returncode == 1
    assert all(name in str(refused.value) for name in SHIPPED)
    assert list(tmp_path.iterdir()) == []  # --check writes nothing


def test_check_passes_after_a_write(tmp_path: Path, site: str) -> None:
    write(tmp_path)
    assert "up to date" in write(tmp_path, check=True)


def test_check_names_the_file_edited_since(tmp_path: Path, site: str) -> None:
    write(tmp_path)
    edited, *others = sorted(SHIPPED)
    (tmp_path / edited).write_text((tmp_path / edited).read_text() + "\n")  # one byte more
    with pytest.raises(CommandError, match=re.escape(f"Out of date in {tmp_path}: {edited} ")) as refused:
        write(tmp_path, check=True)
    assert not any(name in str(refused.value) for name in others)


def test_check_names_every_file_when_the_base_url_changed(tmp_path: Path, settings: Any, site: str) -> None:
    write(tmp_path)
    settings.ETL_MONITOR_BASE_URL = "https://etl.example.org"
    with pytest.raises(CommandError, match=re.escape(", ".join(sorted(SHIPPED)))):
        write(tmp_path, check=True)


DASHBOARD = """{
  "uid": "x",
  "description": "%s",
  "templating": {
    "list": [
      {
        "name": "etl_monitor_url",
        "type": "textbox",
        "hide": 2,
        "query": "http://127.0.0.1:8000",
        "current": {"text": "http://127.0.0.1:8000", "value": "http://127.0.0.1:8000"},
        "options": [{"selected": true, "text": "http://127.0.0.1:8000", "value": "http://127.0.0.1:8000"}]
      }
    ]
  }
}
"""


def test_rendering_refuses_when_the_old_address_appears_outside_the_variable() -> None:
    assert url_variable(grafana_dashboard_render(text=DASHBOARD % "ok", base_url=SITE, name="x.json"))["query"] == SITE
    with pytest.raises(InvalidInput, match="appears elsewhere too"):
        grafana_dashboard_render(text=DASHBOARD % "http://127.0.0.1:8000", base_url=SITE, name="x.json")


def test_rendering_refuses_a_dashboard_without_the_variable() -> None:
    with pytest.raises(InvalidInput, match=r"x\.json: The dashboard has no etl_monitor_url variable"):
        grafana_dashboard_render(text='{"uid": "x"}', base_url=SITE, name="x.json")
