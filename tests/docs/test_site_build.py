"""The documentation site builds with ``mkdocs build --strict`` (as ``make docs`` and CI build it),
and strict really is strict: a copy of the docs with a broken link, a broken anchor and a page left
out of the navigation fails, naming each."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.pages import DOCS_DIR, MKDOCS_YML


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    # Not -v: MkDocs 1.6 skips its anchor validation when logging at DEBUG.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's docs built once for this module's tests."""
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    result = mkdocs_build(MKDOCS_YML, site_dir)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return site_dir


def test_the_site_builds_strict(site: Path) -> None:
    for page in ("index.html", "api-reference/index.html", "versioning/index.html", "search/search_index.json"):
        assert (site / page).is_file(), page


def test_the_api_reference_page_renders_the_schema(site: Path) -> None:
    reference = (site / "api-reference" / "index.html").read_text()
    text = re.sub(r"<[^>]+>", "", reference)  # the plugin wraps path parameters in spans

    assert "[OAD(" not in reference
    for operation in (
        "POST /api/v1/loaders/{loader_code}/approve/",
        "POST /api/v1/signals/",
        "PATCH /api/v1/runs/{run_id}/",
    ):
        assert operation in text, operation
    # Each operation is a heading of its own, under its resource: searchable, with an anchor to
    # link, in the table of contents (one h1 only: Material lists the first h1's sections).
    assert 'id="post-apiv1loadersloader_codeapprove"' in reference
    assert 'id="loaders"' in reference and 'id="incidents"' in reference
    assert reference.count("<h1") == 1


def test_a_broken_link_an_unknown_anchor_or_a_page_out_of_the_nav_fails_the_strict_build(tmp_path: Path) -> None:
    shutil.copytree(DOCS_DIR, tmp_path / "docs")
    shutil.copy(MKDOCS_YML, tmp_path / "mkdocs.yml")
    shutil.copytree(MKDOCS_YML.parent / "docs-site", tmp_path / "docs-site")
    index = tmp_path / "docs" / "index.md"
    index.write_text(
        index.read_text() + "\n\nSee [a page that is not there](no-such-page.md) and "
        "[a heading that is not there](jira.md#no-such-heading).\n"
    )
    (tmp_path / "docs" / "orphan.md").write_text("# A page nobody put in the navigation\n")

    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr

    assert result.returncode != 0, output
    assert "no-such-page.md" in output
    assert "#no-such-heading" in output
    assert "orphan.md" in output
    assert "Aborted" in output and "strict mode" in output
