"""Declarative configuration (``manage.py apply_config FILE.yaml``).

A YAML file's top-level keys are *sections*; each section is a small class
registered here by the app that owns it (loaders: ``teams`` and ``loaders``;
incidents: ``detection_rules``; later features add ``notification_rules`` and
``data_sources``). Applying is all-or-nothing in one transaction, every change
goes through the owning app's services (so four-eyes and validation hold), and
``--dry-run`` runs exactly the same code and rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import yaml
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from etl_monitor.errors import InvalidInput, ServiceError

T = TypeVar("T")


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class ConfigChange:
    section: str
    key: str
    action: str  # created | changed | unchanged
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.section} {self.key}: {self.action}{detail}"


class LineMap:
    """Line numbers (1-based) of every key path in a YAML document, for error messages."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._lines: dict[str, int] = {}
        if root is not None:
            self._walk(root, "")

    def _walk(self, node: yaml.Node, path: str) -> None:
        self._lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                self._lines[child] = key_node.start_mark.line + 1
                self._walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, f"{path}[{index}]")

    def line(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else path.rsplit("[", 1)[0] if "[" in path else ""
        return self._lines.get("")


class ConfigContext:
    """What a section needs while applying: the acting user, the source, and error collection."""

    def __init__(self, *, user: AbstractBaseUser, source: str, lines: LineMap) -> None:
        self.user = user
        self.source = source
        self.lines = lines
        self.errors: list[ConfigError] = []
        self.changes: list[ConfigChange] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path=path, line=self.lines.line(path), message=message))

    def change(self, section: str, key: str, action: str, fields: list[str] | None = None) -> None:
        self.changes.append(ConfigChange(section, key, action, list(fields or [])))


class ConfigSection(Protocol):
    """One top-level key of the configuration file."""

    key: str
    order: int  # sections apply in ascending order (teams before the loaders that name them)

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        """Validate and apply ``value``; report problems with ``ctx.error`` and results with ``ctx.change``."""


_SECTIONS: dict[str, ConfigSection] = {}


def config_section_register(section: ConfigSection) -> None:
    _SECTIONS[section.key] = section


def config_sections() -> list[ConfigSection]:
    return sorted(_SECTIONS.values(), key=lambda s: s.order)


def config_parse(text: str) -> tuple[dict[str, Any], LineMap]:
    """Parse YAML safely (no Python tags) and check the top level."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigInvalid([ConfigError(path="(file)", line=line, message=f"Not valid YAML: {problem}")])
    lines = LineMap(root)
    if data is None:
        raise ConfigInvalid([ConfigError(path="(file)", line=None, message="The file is empty.")])
    if not isinstance(data, dict):
        raise ConfigInvalid(
            [ConfigError(path="(file)", line=1, message="The top level must be a mapping of sections.")]
        )
    unknown = [key for key in data if key not in _SECTIONS]
    if unknown:
        known = ", ".join(sorted(_SECTIONS))
        raise ConfigInvalid(
            [
                ConfigError(path=str(k), line=lines.line(str(k)), message=f"Unknown section (known: {known}).")
                for k in unknown
            ]
        )
    return data, lines


def config_apply(*, text: str, user: AbstractBaseUser, source: str, dry_run: bool = False) -> list[ConfigChange]:
    """Apply a configuration document all-or-nothing; return what changed (or would change).

    Raises ConfigInvalid listing every error (with key path and line) and writes nothing then.
    """
    data, lines = config_parse(text)
    ctx = ConfigContext(user=user, source=source, lines=lines)
    with transaction.atomic():
        for section in config_sections():
            if section.key in data:
                section.apply(data[section.key], ctx)
        if ctx.errors:
            transaction.set_rollback(True)
            raise ConfigInvalid(ctx.errors)
        if dry_run:
            transaction.set_rollback(True)
    return ctx.changes


def config_items(value: Any, section: str, ctx: ConfigContext, key_field: str) -> list[tuple[str, dict]]:
    """A section that is a list of mappings keyed by ``key_field``: (path, item) of the valid ones;
    every malformed, keyless or duplicate item is reported at its path."""
    if not isinstance(value, list):
        ctx.error(section, f"Must be a list of {section} (each a mapping with '{key_field}').")
        return []
    items = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        path = f"{section}[{index}]"
        if not isinstance(item, dict):
            ctx.error(path, "Must be a mapping.")
            continue
        key = item.get(key_field)
        if not isinstance(key, str) or not key.strip():
            ctx.error(f"{path}.{key_field}", "Required.")
            continue
        if key in seen:
            ctx.error(f"{path}.{key_field}", f"Duplicate {key_field} {key!r} (also at {section}[{seen[key]}]).")
            continue
        seen[key] = index
        items.append((path, item))
    return items


def config_report(ctx: ConfigContext, path: str, exc: ServiceError) -> None:
    """A service's refusal, at the item's path (InvalidInput: one error per field)."""
    if isinstance(exc, InvalidInput):
        for field, messages in exc.errors.items():
            ctx.error(f"{path}.{field}" if field != "non_field_errors" else path, "; ".join(messages))
    else:
        ctx.error(path, exc.message)


def config_upsert(
    ctx: ConfigContext,
    *,
    section: str,
    key: str,
    path: str,
    existing: T | None,
    save: Callable[[], T],
    snapshot: Callable[[T | None], dict[str, Any]],
) -> None:
    """Create or change one item through ``save`` (its service) and report it: ``created``;
    ``changed`` with the fields whose ``snapshot`` differs; or ``unchanged``, and then the save is
    rolled back, so applying the same file again writes no history row and has no side effect.
    A service's refusal is reported at ``path``."""
    try:
        with transaction.atomic():
            before = snapshot(existing)  # before the save: services change the instance they are given
            after = snapshot(save())
            if existing is not None and before == after:
                transaction.set_rollback(True)
    except ServiceError as exc:
        config_report(ctx, path, exc)
        return
    if existing is None:
        ctx.change(section, key, "created")
    else:
        changed = sorted(k for k in after if before.get(k) != after.get(k))
        ctx.change(section, key, "changed" if changed else "unchanged", changed)
