"""Reading untrusted request bodies: JSON bounded in depth and free of NUL, form fields free of NUL.

Every body the platform parses comes through here: DRF's parsers (``etl_monitor.parsers``), the ingest
endpoints' own JSON reader, both webhooks and, for form posts, ``RejectNulMiddleware``.

- **Depth.** Python's JSON decoder recurses once per ``[`` or ``{``, so ``[`` × 100,000 ends in a
  RecursionError (a 500) before any view sees the data. No payload of ours nests more than a few
  levels, so bodies nested deeper than ``JSON_MAX_DEPTH`` are refused *before* decoding, by a
  linear scan of the brackets outside strings.
- **NUL.** PostgreSQL refuses NUL in text and in ``jsonb``, so a ``"\\u0000"`` that reached a
  lookup or a write ended as a server error there (SQLite merely answered "does not exist").
  Strings holding one are refused with the path of the field (``scope_loaders.1``,
  ``params.signal_key``), keys included. The ingest endpoints opt out (``nul_allowed``): their
  service judges NUL field by field, keeping free text such as ``error_text`` with the NUL
  replaced, as docs/ingest-api.md promises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

JSON_MAX_DEPTH = 64
NUL_MESSAGE = "NUL characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate escapes (such as \\ud800) are not valid Unicode text."

# Every byte but the brackets and the quote: what the depth scan throws away first.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"')
# For depth, an object is an array: ``{`` and ``}`` are read as ``[`` and ``]``.
_BRACES_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_OPENER = ord("[")
# A NUL in a valid JSON string is always the escape \u0000 (a raw NUL byte is invalid JSON), not
# itself escaped: preceded by an even number of backslashes.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Any surrogate escape (paired ones decode to one character; only then are the strings looked at).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONRefused(ValueError):
    """A body that is JSON but that the platform will not take. ``path`` names the field holding a
    NUL (dotted, list items by index; ``""`` for the body itself), or is None when the body as a
    whole is refused (too deep)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


def _constant_refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def json_depth_exceeds(raw: bytes, limit: int = JSON_MAX_DEPTH) -> bool:
    """True when ``raw`` opens more than ``limit`` arrays/objects inside each other; a malformed
    body is left to the decoder to name. Linear, and in C but for one step per bracket (a 5,000
    signal batch: a few ms, less than decoding it): brackets inside strings are text, so escaped
    backslashes, then escaped quotes are dropped (left to right, as JSON reads them); every quote
    left opens or closes a string, and the pieces between quotes alternate structure and string."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot be deeper than it has brackets
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(unescaped.translate(_BRACES_AS_BRACKETS, _NOT_STRUCTURE).split(b'"')[::2])
    depth = 0
    for byte in structure:
        depth += 1 if byte == _OPENER else -1
        if depth > limit:
            return True
        if depth < 0:
            return False  # unbalanced: not JSON, which the decoder says better
    return False


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _unpaired_surrogate(text: str) -> bool:
    """A lone UTF-16 surrogate (``"\\ud800"``) decodes in Python but is not Unicode text: no
    UTF-8 encoder (PostgreSQL's, the response's) can write it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_nul_path(value: Any, bad: Callable[[str], bool] = _has_nul) -> str | None:
    """The dotted path of the first string (value or key) holding a NUL (or for which ``bad`` holds),
    in document order, or None.
    Iterative: the value may be as deep as JSON_MAX_DEPTH allows without using the call stack."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if bad(item):
                return path
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                key_path = f"{path}.{key}" if path else key
                if bad(key):
                    return key_path.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()
                children.append((key_path, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            indexed = [(f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item)]
            stack.extend(reversed(indexed))
    return None


def json_loads(raw: bytes | str, *, nul_allowed: bool = False, parse_constant: Any = _constant_refuse) -> Any:
    """Decode a request body: JSONRefused when it nests deeper than JSON_MAX_DEPTH or (unless
    ``nul_allowed``) holds a NUL in any string; the decoder's ValueError when it is not JSON, or
    uses NaN/Infinity (not JSON, and not storable)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_depth_exceeds(data):
        raise JSONRefused(f"JSON nested deeper than {JSON_MAX_DEPTH} levels.")
    value = json.loads(raw, parse_constant=parse_constant)
    if not nul_allowed and b"u0000" in data and _NUL_ESCAPE.search(data):
        path = json_nul_path(value)
        if path is not None:
            raise JSONRefused(NUL_MESSAGE, path or "non_field_errors")
    if _SURROGATE_ESCAPE.search(data):
        path = json_nul_path(value, _unpaired_surrogate)
        if path is not None:
            raise JSONRefused(SURROGATE_MESSAGE, path or "non_field_errors")
    return value


def form_nul_field(fields: Iterable[tuple[str, list[Any]]]) -> str | None:
    """The first form field (from ``QueryDict.lists()``) whose name or a value holds a NUL, or None.
    Uploaded files are content, not text, and are left to their readers."""
    for name, values in fields:
        if "\x00" in name:
            return name.replace("\x00", "\\u0000")
        if any(isinstance(value, str) and "\x00" in value for value in values):
            return name
    return None
