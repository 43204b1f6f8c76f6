"""Every error message docs/troubleshooting.md quotes still occurs in the code, so the page cannot
drift from what a user sees.

The page's convention, read here:

- a line ``**Error:** `<text>` `` quotes a message of ETL Monitor: it must occur in the project's
  code (``*.py`` of the apps, and the ``*.html`` templates);
- ``**Error (Django):** `<text>` `` quotes a message Django writes: it must occur in the installed
  Django package (the pinned version), so an upgrade that rewords it fails here;
- where the code formats a message with variables, the page writes the variable part as ``…``:
  each constant piece between the ``…`` must then occur, in that order, in one source file.

A Python file is searched as the text of its string literals, implicitly concatenated literals
joined as Python joins them (a message split over several lines reads as one), each f-string
placeholder read as ``{…}``. Runs of whitespace count as one space,
in the page and in the code alike (templates wrap their text)."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import django
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
# The project's own apps (those of INSTALLED_APPS that live in this repository) and the templates.
APPS = (*(app for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()), "templates")
DJANGO = Path(django.__file__).resolve().parent
QUOTE = re.compile(r"\*\*Error(?P<django> \(Django\))?:\*\* `(?P<text>[^`]+)`")
MIN_MESSAGES = 10


def _space(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def quoted_messages(markdown: str) -> list[tuple[str, bool]]:
    """(message, from Django) for every ``**Error…:** `…` `` of the page, in page order."""
    return [(m["text"], bool(m["django"])) for m in QUOTE.finditer(markdown)]


def _rendered(node: ast.AST) -> str:
    """A string literal's text; in an f-string each placeholder reads ``{…}``, which ``…`` stands for."""
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(part.value if isinstance(part, ast.Constant) else "{…}" for part in node.values)


def python_strings(source: str) -> str:
    """The string literals of a Python source in source order, one per line. Python has already
    joined implicitly concatenated literals into one node, so a message split over lines is whole."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    parts = [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    inner = {id(value) for joined in parts for value in joined.values}
    parts += [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner
    ]
    parts.sort(key=lambda node: (node.lineno, node.col_offset))
    return "\n".join(_rendered(node) for node in parts)


def _searchable(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return _space(python_strings(text) if path.suffix == ".py" else text)


@functools.cache
def corpus(django_package: bool) -> tuple[tuple[str, str], ...]:
    """(path, searchable text) of every file a message may come from."""
    if django_package:
        paths = [p for p in DJANGO.rglob("*") if p.suffix in (".py", ".html")]
    else:
        paths = [p for app in APPS for p in (ROOT / app).rglob("*") if p.suffix in (".py", ".html")]
    return tuple((str(p), _searchable(p)) for p in sorted(paths))


def pieces(message: str) -> list[str]:
    """The constant pieces of a quoted message, split at each ``…``."""
    return [piece for piece in (_space(part).strip() for part in message.split("…")) if piece]


def found_in(message: str, files: tuple[tuple[str, str], ...]) -> str | None:
    """The first file holding every constant piece of ``message`` in order, or None."""
    wanted = pieces(message)
    for path, text in files:
        position = 0
        for piece in wanted:
            position = text.find(piece, position)
            if position < 0:
                break
            position += len(piece)
        else:
            return path
    return None


MESSAGES = quoted_messages(PAGE.read_text(encoding="utf-8"))


def test_it_quotes_at_least_ten_messages() -> None:
    assert len(MESSAGES) >= MIN_MESSAGES, f"troubleshooting.md quotes {len(MESSAGES)} messages"
    assert all(pieces(message) for message, _ in MESSAGES), "a quoted message without any constant text"


@pytest.mark.parametrize(("message", "from_django"), MESSAGES, ids=[m[:60] for m, _ in MESSAGES])
def test_it_finds_each_quoted_message_in_the_code(message: str, from_django: bool) -> None:
    where = "the installed Django" if from_django else "the apps' code and templates"
    if found_in(message, corpus(from_django)) is None:
        pytest.fail(f"not in {where}: {message!r}")


def test_it_does_not_find_a_made_up_message() -> None:
    assert found_in("The flux capacitor refused to start: … gigawatts are missing.", corpus(False)) is None
    assert found_in("The flux capacitor refused to start: … gigawatts are missing.", corpus(True)) is None


def test_it_wants_the_pieces_in_order_and_in_one_file() -> None:
    in_order = "Too many failed logins for this account or from this address: … Try again after …"
    assert found_in(in_order, corpus(False))
    assert found_in("Try again after … Too many failed logins for this account", corpus(False)) is None
    # Each piece exists, but in two different files: not one message.
    assert found_in("Refusing to start: … ALLOWED_HOSTS must be set when DEBUG is off.", corpus(False)) is None


def test_it_reads_a_message_split_over_concatenated_literals() -> None:
    source = 'raise Error(\n    "first half of it "\n    f"and the {thing} second half."\n)\n'
    text = _space(python_strings(source))
    assert found_in("first half of it and the … second half.", (("x.py", text),)) == "x.py"
