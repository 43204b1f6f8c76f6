"""Field-level protection, enforced in this one place for every path.

A model opts in with ``protection_register`` (its protectable and its secret
fields). Each path asks for the *policy* of a user on a model and applies it:

- reads (admin forms and lists, history, API, export, import preview) call
  ``policy.redact`` / ``policy.display``: HIDDEN fields disappear, MASKED ones
  show ``••••••`` (and, for secrets, whether a value is set);
- writes (the services behind admin, API, import and apply_config) call
  ``policy.check_write`` with the fields they change: HIDDEN and LOCKED fields
  are refused with a message naming the field;
- outbound payloads (email, Slack, Jira, webhooks) call ``outbound_redact``,
  which applies every protection with no exemption;
- text rendered earlier and stored (a delivery's payload) is read through
  ``policy.redact_rendered``: a value of a field the user may not see *today*
  is masked wherever it occurs, as a rule may have come after the rendering.

Secrets (encrypted at rest) are MASKED for everyone, exempt roles included:
the UI can replace a secret, never reveal it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from etl_monitor.errors import InvalidInput

MASK = "••••••"
SECRET_NAME_RE = re.compile(r"(password|passwd|secret|token|api_?key|private_?key)", re.IGNORECASE)


@dataclass(frozen=True)
class Protectable:
    label: str
    fields: tuple[str, ...]
    secrets: tuple[str, ...]


_REGISTRY: dict[str, Protectable] = {}


def protection_register(model: type[models.Model], *, fields: Iterable[str], secret_fields: Iterable[str] = ()) -> None:
    """Let admins protect ``fields`` of ``model``; ``secret_fields`` (plus any field named like a
    password, token or key) are always masked."""
    fields = tuple(fields)
    secrets = tuple(dict.fromkeys([*secret_fields, *(f for f in fields if SECRET_NAME_RE.search(f))]))
    _REGISTRY[model._meta.label_lower] = Protectable(model._meta.label_lower, fields, secrets)


def protectable_models() -> list[str]:
    return sorted(_REGISTRY)


def protectable_fields(label: str) -> tuple[str, ...] | None:
    entry = _REGISTRY.get(label)
    return entry.fields if entry else None


def secret_fields(label: str) -> tuple[str, ...]:
    entry = _REGISTRY.get(label)
    return entry.secrets if entry else ()


@dataclass
class FieldPolicy:
    """What one user may see and change of one model's fields."""

    label: str
    levels: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()

    def level(self, name: str) -> str | None:
        return self.levels.get(name)

    @property
    def hidden(self) -> set[str]:
        return {f for f, level in self.levels.items() if level == "HIDDEN"}

    @property
    def masked(self) -> set[str]:
        return {f for f, level in self.levels.items() if level == "MASKED"}

    @property
    def locked(self) -> set[str]:
        return {f for f, level in self.levels.items() if level == "LOCKED"}

    def display(self, name: str, value: Any) -> Any:
        """The value as this user may see it (callers drop HIDDEN fields themselves)."""
        level = self.levels.get(name)
        if level in ("MASKED", "HIDDEN"):
            if name in self.secrets:
                return f"{MASK} (set)" if value not in (None, "") else "(not set)"
            return MASK if value not in (None, "") else value
        return value

    def redact(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with HIDDEN keys removed and MASKED values masked."""
        return {k: self.display(k, v) for k, v in data.items() if self.levels.get(k) != "HIDDEN"}

    def redact_rendered(self, data: Any, values: Mapping[str, Iterable[str]]) -> Any:
        """A copy of ``data`` (JSON: dicts, lists, strings), rendered before the rules of today,
        with every value in ``values`` (field → the values it has had) of a HIDDEN or MASKED
        field replaced by ``MASK`` in every string. The text around it stays as it was sent, so
        a HIDDEN value is masked too: it cannot be cut out of a sentence."""
        pattern = _values_pattern(
            value for name, given in values.items() if name in self.hidden | self.masked for value in given
        )
        return data if pattern is None else _strings_replace(data, pattern)

    def check_write(self, changed: Iterable[str]) -> None:
        """Refuse changes to HIDDEN or LOCKED fields, naming each one."""
        errors: dict[str, list[str]] = {}
        for name in changed:
            level = self.levels.get(name)
            if level == "LOCKED":
                errors[name] = ["This field is locked for your role; ask an administrator to change it."]
            elif level == "HIDDEN" and name not in self.secrets:
                errors[name] = ["This field is hidden from your role and cannot be changed by you."]
        if errors:
            raise InvalidInput(errors)


# How a character of a value may read once a channel escaped it: HTML (email), Slack mrkdwn
# (& < > as entities), Jira wiki markup (a backslash before punctuation, a backslash as &#92;).
_ESCAPED = {
    "\\": ("&#92;",),
    "&": ("&amp;", "&#38;"),
    "<": ("&lt;", "&#60;"),
    ">": ("&gt;", "&#62;"),
    '"': ("&quot;", "&#34;", "&#x22;"),
    "'": ("&#x27;", "&#39;", "&apos;"),
}


def _values_pattern(values: Iterable[Any]) -> re.Pattern[str] | None:
    """One pattern matching any of ``values`` as a whole word (not inside a longer one), raw or
    as a channel escaped it; longer values first, so a value containing another is masked whole."""
    texts = sorted({str(v) for v in values if v not in (None, "") and str(v).strip()}, key=len, reverse=True)
    if not texts:
        return None
    alternatives = []
    for text in texts:
        parts = []
        for char in text:
            forms = [re.escape(char), *(re.escape(e) for e in _ESCAPED.get(char, ()))]
            choice = forms[0] if len(forms) == 1 else f"(?:{'|'.join(forms)})"
            if char.isspace():
                choice = r"\s+"  # a renderer may wrap or re-indent a line
            parts.append(choice if char.isalnum() or char.isspace() else rf"\\?{choice}")
        before = r"(?<!\w)" if re.match(r"\w", text) else ""
        after = r"(?!\w)" if re.search(r"\w$", text) else ""
        alternatives.append(before + "".join(parts) + after)
    return re.compile("|".join(alternatives))


def _strings_replace(data: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(data, str):
        return pattern.sub(MASK, data)
    if isinstance(data, dict):
        return {key: _strings_replace(value, pattern) for key, value in data.items()}
    if isinstance(data, list):
        return [_strings_replace(value, pattern) for value in data]
    return data


def _rules(label: str) -> list[Any]:
    from etl_monitor.models import FieldProtection

    return list(FieldProtection.objects.filter(model_label=label).prefetch_related("exempt_groups"))


def policy_for(user: Any, model: type[models.Model] | str) -> FieldPolicy:
    """The protection policy of ``user`` (None = the system, no exemptions) on ``model``.

    Cached on the user object for the duration of a request, so a list page
    costs the same few queries whatever its length.
    """
    label = model if isinstance(model, str) else model._meta.label_lower
    cache = getattr(user, "_field_policies", None) if user is not None else None
    if cache is not None and cache.get("generation") != _generation:
        cache.clear()  # a rule changed in this process since the policy was cached
    if cache is not None and label in cache:
        return cache[label]
    group_ids: set[int] | None = None

    def exempt(rule: Any) -> bool:
        nonlocal group_ids
        if user is None:
            return False
        if getattr(user, "is_superuser", False):
            return True
        if group_ids is None:
            group_ids = set(user.groups.values_list("id", flat=True)) if user.is_authenticated else set()
        return bool(group_ids & {g.pk for g in rule.exempt_groups.all()})

    policy = _policy(label, exempt)
    if user is not None:
        if cache is None:
            cache = {"generation": _generation}
            try:
                user._field_policies = cache
            except AttributeError:
                return policy
        cache["generation"] = _generation
        cache[label] = policy
    return policy


def policy_for_role(role: str, model: type[models.Model] | str) -> FieldPolicy:
    """The policy of a member of the group ``role`` and of no other group (not a superuser):
    what that role sees wherever a path has no user of its own, e.g. the Grafana database role."""
    label = model if isinstance(model, str) else model._meta.label_lower
    return _policy(label, lambda rule: role in {g.name for g in rule.exempt_groups.all()})


def _policy(label: str, exempt: Callable[[Any], bool]) -> FieldPolicy:
    """The policy on ``label``: every rule applies unless ``exempt(rule)``; secrets stay masked
    (or hidden, if a rule says so) whoever asks."""
    secrets = frozenset(secret_fields(label))
    levels: dict[str, str] = dict.fromkeys(secrets, "MASKED")
    for rule in _rules(label):
        if rule.field_name in secrets:
            levels[rule.field_name] = "HIDDEN" if rule.level == "HIDDEN" else "MASKED"
        elif not exempt(rule):
            levels[rule.field_name] = rule.level
    return FieldPolicy(label=label, levels=levels, secrets=secrets)


_generation = 0


def protection_rules_changed(**kwargs: Any) -> None:
    """Signal receiver: drop policies cached on user objects of this process."""
    global _generation
    _generation += 1


def outbound_redact(model: type[models.Model] | str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Apply every protection, with no exemption, to data leaving the system
    (notification payloads, tickets, webhooks)."""
    return policy_for(None, model).redact(data)


SCRUB_PATTERNS = (
    # key=value / key: value pairs whose key names a secret
    re.compile(
        r"(?i)\b([\w-]*(?:password|passwd|secret|token|api_?key)[\w-]*)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
    ),
    # credentials in URLs: scheme://user:password@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)"),
    # Fernet tokens (our ciphertext) and Authorization headers
    re.compile(r"(fernet:)?(gAAAAA[0-9A-Za-z_\-=]{20,})"),
    re.compile(r"(?i)(authorization\s*[:=]\s*(?:token|bearer|basic)\s+)(\S+)"),
)


def scrub(text: str) -> str:
    """Remove anything that looks like a secret from a log line or message."""
    text = SCRUB_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = SCRUB_PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    text = SCRUB_PATTERNS[2].sub(MASK, text)
    return SCRUB_PATTERNS[3].sub(lambda m: f"{m.group(1)}{MASK}", text)
