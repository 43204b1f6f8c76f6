"""People's actions on incidents, and the detection rule writes.

Acknowledge, resolve, close and comment — from the admin's buttons, the API and Jira alike — and
the rule writes shared by the admin, the API and ``apply_config`` (``rule_check`` validates,
``rule_save`` saves). Each checks the caller's permission here; each change of an incident is a
timeline entry (``incidents.events``). Detection itself is ``incidents.detection``, silences
``incidents.silences``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from etl_monitor.errors import InvalidInput, StateConflict
from etl_monitor.permissions import permission_require
from incidents.events import event_record
from incidents.kinds import kind_get
from incidents.models import ACTIVE_STATUSES, DetectionRule, EventKind, Incident, IncidentEvent, IncidentStatus
from loaders.models import Loader

# --- lifecycle by people --------------------------------------------------------------------------


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


@transaction.atomic
def incident_acknowledge(
    *, user: AbstractBaseUser, incident: Incident, comment: str = "", source: str = ""
) -> Incident:
    """OPEN → ACKNOWLEDGED: someone is on it (stops escalation in the notification feature).
    ``source``: where it was done when not here ("slack", "sms", "voice"), kept on the timeline."""
    permission_require(user, "incidents.change_incident", "acknowledge incidents")
    incident = _locked(incident)
    if incident.status != IncidentStatus.OPEN:
        raise StateConflict(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}; only an open one can be acknowledged."
        )
    now = timezone.now()
    incident.acknowledge()
    incident.acknowledged_at, incident.acknowledged_by = now, user
    incident.save()
    data = {"source": source} if source else None
    event_record(incident, EventKind.ACKNOWLEDGED, at=now, actor=user, message=comment, data=data)
    return incident


@transaction.atomic
def incident_resolve(*, user: AbstractBaseUser, incident: Incident, comment: str = "", source: str = "") -> Incident:
    """→ RESOLVED by a person. ``source`` names where it was done when not here (e.g. "jira"):
    integrations do not echo such a change back to where it came from."""
    permission_require(user, "incidents.change_incident", "resolve incidents")
    incident = _locked(incident)
    if incident.status not in ACTIVE_STATUSES:
        raise StateConflict(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}; it cannot be resolved."
        )
    now = timezone.now()
    incident.resolve()
    incident.resolved_at, incident.resolved_by = now, user
    incident.flapping = False  # a person decided: the next breach starts a fresh count
    incident.save()
    event_record(
        incident,
        EventKind.RESOLVED,
        at=now,
        actor=user,
        message=comment or "Resolved by hand.",
        data={"source": source} if source else None,
    )
    return incident


@transaction.atomic
def incident_close(*, user: AbstractBaseUser, incident: Incident, comment: str = "") -> Incident:
    """Close for good (a later breach opens a new incident instead of reopening this one)."""
    permission_require(user, "incidents.change_incident", "close incidents")
    incident = _locked(incident)
    if incident.status == IncidentStatus.CLOSED:
        raise StateConflict(f"Incident #{incident.pk} is already closed.")
    now = timezone.now()
    incident.close()
    incident.closed_at = now
    incident.save()
    event_record(incident, EventKind.CLOSED, at=now, actor=user, message=comment)
    return incident


@transaction.atomic
def incident_comment(*, user: AbstractBaseUser, incident: Incident, text: str, source: str = "") -> IncidentEvent:
    permission_require(user, "incidents.add_incidentevent", "comment on incidents")
    text = (text or "").strip()
    if not text:
        raise InvalidInput({"text": ["Write a comment."]})
    data = {"source": source} if source else None
    return event_record(incident, EventKind.COMMENTED, at=timezone.now(), actor=user, message=text[:5000], data=data)


# The lifecycle actions a person may take; detection's own (reopen) is not one of them.
PEOPLES_TRANSITIONS = ("acknowledge", "resolve", "close")


def incident_allowed_actions(*, user: AbstractBaseUser, incident: Incident) -> set[str]:
    """The actions ``user`` may take on ``incident`` now, so a button never promises what the
    services above refuse: the state machine's own transitions from the current status (the
    sources the services check) for holders of the change permission, and commenting for holders
    of the comment permission."""
    allowed: set[str] = set()
    if user.is_active and user.has_perm("incidents.change_incident"):
        possible = {t.name for t in incident.get_available_status_transitions()}
        allowed |= possible & set(PEOPLES_TRANSITIONS)
    if user.is_active and user.has_perm("incidents.add_incidentevent"):
        allowed.add("comment")
    return allowed


# --- rules: writes shared by admin, API and apply_config ------------------------------------------

RULE_FIELDS = (
    "name",
    "rule_type",
    "kind",
    "params",
    "operator",
    "threshold",
    "window_seconds",
    "severity",
    "message",
    "suggestion",
    "runbook_url",
    "scope",
    "scope_loaders",
    "scope_tag",
    "scope_owner",
    "interval_seconds",
    "open_after",
    "resolve_after_seconds",
    "enabled",
)


def _template_errors(text: str) -> str | None:
    import string

    try:
        list(string.Formatter().parse(text or ""))
    except ValueError as exc:
        return f"Not a valid template ({exc}); use {{subject}}, {{value}}, {{threshold}}, {{window}}."
    return None


def rule_check(*, data: dict[str, Any], rule: DetectionRule | None = None) -> tuple[DetectionRule, list | None]:
    """Apply ``data`` to (a copy of) a rule without saving; raise InvalidInput naming every bad field.

    Returns the rule and its scope loaders (None = unchanged). The admin form calls it to show
    errors next to the fields; ``rule_save`` calls it before saving.
    """
    from django.core.exceptions import ValidationError

    from loaders.selectors import tag_named, team_named

    unknown = sorted(set(data) - set(RULE_FIELDS))
    if unknown:
        raise InvalidInput({name: ["Unknown field."] for name in unknown})
    rule = rule or DetectionRule()
    errors: dict[str, list[str]] = {}
    loaders = None
    for name, value in data.items():
        if name == "scope_loaders":
            codes = [v.loader_code if isinstance(v, Loader) else str(v) for v in (value or [])]
            found = {loader.loader_code: loader for loader in Loader.objects.filter(loader_code__in=codes)}
            missing = [c for c in codes if c not in found]
            if missing:
                errors["scope_loaders"] = [f"Unknown loader(s): {', '.join(missing)}."]
            loaders = list(found.values())
        elif name == "scope_tag":
            rule.scope_tag = tag_named(value, name, errors)
        elif name == "scope_owner":
            rule.scope_owner = team_named(value, name, errors)
        else:
            setattr(rule, name, value)
    try:
        kind = kind_get(rule.kind)
    except InvalidInput as exc:
        errors.update(exc.errors)
        kind = None
    if kind is not None:
        try:
            rule.params = kind.validate_params(rule.params)
        except InvalidInput as exc:
            errors.update(exc.errors)
        if rule.threshold is None and rule.operator != "EXISTS" and not kind.self_deciding:
            if kind.default_threshold is None:
                errors.setdefault("threshold", []).append(f"{kind.name} needs a threshold.")
            else:
                rule.threshold = kind.default_threshold
    if rule.scope == "TAG" and rule.scope_tag is None:
        errors.setdefault("scope_tag", []).append("A tag scope needs a tag.")
    if rule.scope == "OWNER" and rule.scope_owner is None:
        errors.setdefault("scope_owner", []).append("A team scope needs a team.")
    if rule.scope == "LOADERS" and not (loaders if loaders is not None else (rule.pk and rule.scope_loaders.exists())):
        errors.setdefault("scope_loaders", []).append("A loader scope needs at least one loader.")
    # The kind judges the whole condition only once its parameters are valid (a list as params
    # would otherwise reach the kind's reading of them).
    if kind is not None and not any(name.split(".")[0] == "params" for name in errors):
        for name, problems in kind.condition_errors(rule).items():
            errors.setdefault(name, []).extend(problems)
    for name in ("message", "suggestion"):
        if problem := _template_errors(getattr(rule, name)):
            errors.setdefault(name, []).append(problem)
    if rule.interval_seconds is not None and rule.interval_seconds < 10:
        errors.setdefault("interval_seconds", []).append("At least 10 seconds.")
    try:
        rule.full_clean(exclude=["scope_loaders", "params", "kind", *errors])
    except ValidationError as exc:
        for field_name, messages in exc.message_dict.items():
            errors.setdefault(field_name, []).extend(messages)
    if errors:
        raise InvalidInput(errors)
    return rule, loaders


@transaction.atomic
def rule_save(*, user: AbstractBaseUser, data: dict[str, Any], rule: DetectionRule | None = None) -> DetectionRule:
    """Create or change a detection rule after validating its kind, parameters, scope and templates.

    ``scope_loaders`` are loader codes, ``scope_tag`` a tag name, ``scope_owner`` a team slug
    (or the objects themselves). Only roles holding the rule permissions (Admin) may do it.
    """
    perm = "incidents.change_detectionrule" if rule else "incidents.add_detectionrule"
    permission_require(user, perm, "manage detection rules")
    rule, loaders = rule_check(data=data, rule=rule)
    rule._history_user = user
    rule.next_due_at = None  # evaluate soon with the new definition
    rule.save()
    if loaders is not None:
        rule.scope_loaders.set(loaders)
    return rule
