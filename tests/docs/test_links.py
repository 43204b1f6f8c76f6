"""Every relative link and anchor of the documentation leads somewhere: one case per page, so a
failure names the page, the line and the link.

Links between docs pages are checked as the built site resolves them (a docs page may link only
inside docs/, and its anchors are the site's: Python-Markdown's toc slugs, a repeated heading
``_1``); the README, read on GitHub, may link anywhere in the repository, its own anchors are
GitHub's (a repeated heading ``-1``) and its anchors into docs pages the site's. The strict site
build checks the docs pages too (test_site_build.py); this test is the fast one, says which line,
and covers the README."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.docs.pages import (
    DOCS_DIR,
    README,
    REPO_DIR,
    doc_pages,
    github_anchors,
    inline_items,
    page_name,
    site_anchors,
)


def _anchors(target: Path, docs_dir: Path) -> frozenset[str]:
    if target.is_relative_to(docs_dir):
        return site_anchors(target)
    return github_anchors(target)


def link_problems(page: Path, docs_dir: Path = DOCS_DIR, repo_dir: Path = REPO_DIR) -> list[str]:
    """Each broken relative link or anchor of ``page`` as ``page:line: link: why``."""
    in_docs = page.is_relative_to(docs_dir)
    problems: list[str] = []
    for item in inline_items(page.read_text()):
        where = f"{page_name(page)}:{item.line}: {item.value}"
        if item.kind == "undefined-ref":
            problems.append(f"{where}: a reference link whose label is defined nowhere on the page")
            continue
        if item.kind == "code":
            continue
        parts = urlsplit(item.value)
        if parts.scheme or parts.netloc:
            continue  # an external URL (http:, https:, mailto:…)
        if not parts.path and not parts.fragment:
            problems.append(f"{where}: an empty link")
            continue
        if parts.path.startswith("/"):
            problems.append(f"{where}: an absolute path; link the file relatively (e.g. jira.md#setup)")
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if in_docs and not target.is_relative_to(docs_dir):
            problems.append(
                f"{where}: leaves docs/ (the site has only docs/; link a docs page instead, e.g. settings.md)"
            )
            continue
        if not target.exists():
            problems.append(
                f"{where}: no such file {target.relative_to(repo_dir) if target.is_relative_to(repo_dir) else target}"
            )
            continue
        if in_docs and target.is_dir():
            problems.append(f"{where}: a folder; the site links pages (name the .md file)")
            continue
        if parts.fragment:
            if target.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not a page")
            elif unquote(parts.fragment) not in _anchors(target, docs_dir):
                problems.append(f"{where}: no heading or anchor #{parts.fragment} in {page_name(target)}")
    return problems


@pytest.mark.parametrize("page", doc_pages(), ids=page_name)
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    problems = link_problems(page)
    assert not problems, "Broken links:\n" + "\n".join(problems)


def test_the_readme_and_the_site_are_both_walked() -> None:
    pages = doc_pages()
    assert README in pages
    assert DOCS_DIR / "index.md" in pages
    assert len(pages) > 20


# The checker itself, on pages made for it ----------------------------------------------------------


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_it_finds_a_missing_page_a_missing_anchor_and_a_link_out_of_docs(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs, "target.md", "# Target\n\n## Step one\n")
    _write(tmp_path, "README.md", "# Readme\n")
    page = _write(
        docs,
        "page.md",
        "# Page\n\nFine: [a](target.md#step-one), [b](#page).\n\n"
        "[gone](missing.md) and\n[typo](target.md#step-two)\n\n"
        "[out](../README.md) [abs](/admin/) [ref][nowhere]\n",
    )

    problems = link_problems(page, docs_dir=docs, repo_dir=tmp_path)

    assert len(problems) == 5, problems
    assert any("page.md:5: missing.md: no such file" in problem for problem in problems)
    assert any("page.md:6: target.md#step-two: no heading or anchor #step-two" in problem for problem in problems)
    assert any("../README.md: leaves docs/" in problem for problem in problems)
    assert any("/admin/: an absolute path" in problem for problem in problems)
    assert any("[ref][nowhere]: a reference link" in problem for problem in problems)


def test_it_resolves_reference_links(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs, "target.md", "# Target\n")
    page = _write(
        docs, "page.md", "# Page\n\nSee [the target][t] and [the other][o].\n\n[t]: target.md\n[o]: other.md\n"
    )

    problems = link_problems(page, docs_dir=docs, repo_dir=tmp_path)

    assert len(problems) == 1 and "other.md: no such file" in problems[0], problems


def test_it_names_repeated_headings_as_the_site_does(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs, "target.md", "# Target\n\n## Example\n\n## Example\n\n## `GET /api/v1/loaders/`\n")
    page = _write(
        docs,
        "page.md",
        "# Page\n\n[1](target.md#example) [2](target.md#example_1) [3](target.md#get-apiv1loaders)\n"
        "[GitHub's name](target.md#example-1)\n",
    )

    problems = link_problems(page, docs_dir=docs, repo_dir=tmp_path)

    assert problems == [f"{page}:4: target.md#example-1: no heading or anchor #example-1 in {docs / 'target.md'}"]


def test_the_readme_anchors_are_githubs(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs, "index.md", "# Home\n")
    readme = _write(
        tmp_path,
        "README.md",
        "# Readme\n\n## Run it\n\n## Run it\n\n[a](#run-it-1) [b](#run-it_1) [c](docs/index.md#home)\n",
    )

    problems = link_problems(readme, docs_dir=docs, repo_dir=tmp_path)

    assert len(problems) == 1 and "#run-it_1: no heading or anchor" in problems[0], problems
