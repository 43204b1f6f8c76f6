"""The documentation's pages as the docs tests read them: docs/**/*.md and the README, parsed with
markdown-it (CommonMark: the same blocks, code spans and links a reader sees), and each docs page's
anchors as the site renders them (Python-Markdown with mkdocs.yml's extensions)."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import markdown
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO_DIR = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO_DIR / "docs"
README = REPO_DIR / "README.md"
MKDOCS_YML = REPO_DIR / "mkdocs.yml"
OPENAPI_FILE = DOCS_DIR / "api" / "openapi.yaml"


def doc_pages(docs_dir: Path = DOCS_DIR, readme: Path | None = README) -> list[Path]:
    """Every Markdown page of the site, then the README."""
    pages = sorted(docs_dir.rglob("*.md"))
    return [*pages, readme] if readme is not None else pages


def page_name(page: Path) -> str:
    """docs/api.md, README.md: how failures name a page."""
    try:
        return str(page.relative_to(REPO_DIR))
    except ValueError:
        return str(page)


_parser = MarkdownIt("commonmark").enable("table")


def tokens(text: str) -> list[Token]:
    return _parser.parse(text)


@dataclass(frozen=True)
class CodeBlock:
    language: str
    line: int  # 1-based line of the block's first content line in the page
    text: str


def code_blocks(text: str) -> list[CodeBlock]:
    """The page's fenced code blocks (their content, de-indented as inside a list item)."""
    return [
        CodeBlock(language=(token.info.split() or [""])[0].lower(), line=token.map[0] + 2, text=token.content)
        for token in tokens(text)
        if token.type == "fence" and token.map is not None
    ]


@dataclass(frozen=True)
class InlineItem:
    kind: str  # "link", "image", "code"
    value: str  # the href, the image's src, or the code span's text
    line: int


def inline_items(text: str) -> Iterator[InlineItem]:
    """Links (inline and reference, resolved), images and code spans, each with its line. Text that
    looks like a reference link whose label is defined nowhere comes out as kind "undefined-ref"."""
    lines = text.splitlines()
    for block in tokens(text):
        if block.type != "inline" or block.map is None:
            continue
        first, last = block.map

        def line_of(needle: str, first: int = first, last: int = last) -> int:
            for number in range(first, min(last, len(lines))):
                if needle in lines[number]:
                    return number + 1
            return first + 1

        for child in block.children or []:
            if child.type == "link_open":
                href = str(child.attrs.get("href", ""))
                yield InlineItem("link", href, line_of(href))
            elif child.type == "image":
                src = str(child.attrs.get("src", ""))
                yield InlineItem("image", src, line_of(src))
            elif child.type == "code_inline":
                yield InlineItem("code", child.content, line_of(child.content))
            elif child.type == "text":
                for match in re.finditer(r"\[([^\]]+)\]\[([^\]]*)\]", child.content):
                    yield InlineItem("undefined-ref", match.group(0), line_of(match.group(0)))


# Anchors -------------------------------------------------------------------------------------------


def _site_markdown_extensions() -> tuple[list[str], dict[str, dict[str, Any]]]:
    config = yaml.safe_load(MKDOCS_YML.read_text())
    names: list[str] = []
    configs: dict[str, dict[str, Any]] = {}
    for entry in config.get("markdown_extensions", []):
        if isinstance(entry, str):
            names.append(entry)
        else:
            ((name, options),) = entry.items()
            names.append(name)
            configs[name] = options or {}
    return names, configs


def _openapi_markdown(text: str, page: Path) -> str:
    """[OAD(file)] expanded as the site's plugin expands it (neoteroi.mkdocsoad, with mkdocs.yml's
    options: pymdownx style, our templates)."""
    if "[OAD(" not in text:
        return text
    from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler
    from openapidocs.utils.source import read_from_source

    plugins = yaml.safe_load(MKDOCS_YML.read_text()).get("plugins", [])
    options = next(entry["neoteroi.mkdocsoad"] for entry in plugins if "neoteroi.mkdocsoad" in entry)
    templates = options.get("templates_path")

    def expand(match: re.Match[str]) -> str:
        source = match.group(1).strip("'\"")
        data = read_from_source(source, page.parent)
        return OpenAPIV3DocumentationHandler(
            data,
            style="MKDOCS" if options.get("use_pymdownx") else "MARKDOWN",
            source=source,
            templates_path=str(REPO_DIR / templates) if templates else None,
        ).write()

    return re.sub(r"\[OAD\(([^\)]+)\)\]", expand, text)


@functools.cache
def site_anchors(page: Path) -> frozenset[str]:
    """The ids in a docs page's HTML as MkDocs renders it: headings slugified by Python-Markdown's
    toc (``markdown.extensions.toc.slugify``; a repeated heading gets ``_1``, ``_2``…), attr_list
    ``{#id}``s and raw HTML ids — exactly what MkDocs' anchor validation accepts."""
    names, configs = _site_markdown_extensions()
    text = _openapi_markdown(page.read_text(), page)
    rendered = markdown.Markdown(extensions=names, extension_configs=configs).convert(text)
    return frozenset(html.unescape(value) for value in re.findall(r'\bid="([^"]+)"', rendered))


def github_slug(heading: str) -> str:
    """A heading's anchor on GitHub (the README is read there): lower case, punctuation other than
    ``-`` and ``_`` dropped, each space a ``-``."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.cache
def github_anchors(page: Path) -> frozenset[str]:
    """The README's own anchors as GitHub makes them (a repeated heading gets ``-1``, ``-2``…)."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for token_index, token in enumerate(all_tokens := tokens(page.read_text())):
        if token.type != "heading_open":
            continue
        slug = github_slug(all_tokens[token_index + 1].content)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)
