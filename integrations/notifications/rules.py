"""Notification rules as people edit them: who may be told about incidents of a severity.

The admin, the API and ``apply_config`` all write rules through ``notification_rule_save``,
so a rule that names an unknown channel, a malformed address or a badly shaped
escalation tier is refused the same way everywhere (with the field that is wrong).
Routing the incidents by these rules lives in ``integrations.notifications.routing``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from etl_monitor.errors import InvalidInput, fields_known
from etl_monitor.permissions import permission_require
from integrations.models import Channel, NotificationRule
from integrations.notifications.transports import kinds_unrouted, transport_for
from loaders.selectors import tag_named, team_named
from oncall.models import Schedule

RULE_FIELDS = (
    "severity",
    "team",
    "tag",
    "channels",
    "recipients",
    "slack_channel",
    "oncall",
    "escalation_timeout",
    "escalation_tiers",
    "escalation_repeat",
    "repeat_interval",
    "enabled",
)
TIER_KEYS = ("channels", "recipients", "slack_channel", "oncall")


def _names(value: Any, field: str, errors: dict[str, list[str]], what: str) -> list[str]:
    """A list of non-empty strings (None = empty), stripped and without repeats."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        errors.setdefault(field, []).append(f"Must be a list of {what}.")
        return []
    if not all(isinstance(v, str) for v in value):
        errors.setdefault(field, []).append(f"Must be a list of {what} (text).")
        return []
    return list(dict.fromkeys(v.strip() for v in value if v.strip()))


def _check_target(
    spec: dict[str, Any], prefix: str, channels: dict[str, Channel], errors: dict[str, list[str]]
) -> None:
    """One tier (the rule itself or an escalation tier): channels exist, addresses are addresses,
    and every channel named has somewhere to send to — otherwise nobody would be told."""
    names = _names(spec.get("channels"), f"{prefix}channels", errors, "channel names")
    recipients = _names(spec.get("recipients"), f"{prefix}recipients", errors, "email addresses")
    slack_channel = spec.get("slack_channel") or ""
    if not isinstance(slack_channel, str):
        errors.setdefault(f"{prefix}slack_channel", []).append("Must be text, e.g. #alerts-critical.")
        slack_channel = ""
    schedules = _names(spec.get("oncall"), f"{prefix}oncall", errors, "on-call schedule slugs")
    spec.update(channels=names, recipients=recipients, slack_channel=slack_channel.strip(), oncall=schedules)
    if schedules:
        known = set(Schedule.objects.filter(slug__in=schedules).values_list("slug", flat=True))
        if missing := [slug for slug in schedules if slug not in known]:
            errors.setdefault(f"{prefix}oncall", []).append(f"Unknown on-call schedule(s): {', '.join(missing)}.")
    if f"{prefix}channels" in errors:
        return
    if not names:
        errors.setdefault(f"{prefix}channels", []).append("Name at least one channel.")
    unknown = [n for n in names if n not in channels]
    if unknown:
        known = ", ".join(sorted(channels)) or "none yet"
        errors.setdefault(f"{prefix}channels", []).append(f"Unknown channel(s): {', '.join(unknown)} (known: {known}).")
    bad = []
    for address in recipients:
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        errors.setdefault(f"{prefix}recipients", []).append(f"Not valid email address(es): {', '.join(bad)}.")
    # Each kind's transport says what the tier lacks for it (once per kind, naming its last channel);
    # a field already refused above gets no second message.
    for channel in {channels[n].kind: channels[n] for n in names if n in channels}.values():
        for field, problem in transport_for(channel).tier_problems(spec).items():
            if f"{prefix}{field}" not in errors:
                errors[f"{prefix}{field}"] = [problem]


def _check_tiers(value: Any, channels: dict[str, Channel], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors["escalation_tiers"] = ['Must be a list of tiers, each {"channels": [...], "recipients": [...]}.']
        return []
    tiers = []
    for index, tier in enumerate(value):
        prefix = f"escalation_tiers[{index}]"
        if not isinstance(tier, dict):
            errors.setdefault(prefix, []).append("Must be a mapping with channels, recipients, slack_channel, oncall.")
            continue
        unknown = sorted(str(k) for k in tier if k not in TIER_KEYS)
        if unknown:
            errors.setdefault(prefix, []).append(
                f"Unknown key(s): {', '.join(unknown)} (allowed: {', '.join(TIER_KEYS)})."
            )
            continue
        spec = {key: tier.get(key) for key in TIER_KEYS}
        _check_target(spec, f"{prefix}.", channels, errors)
        if not spec["oncall"]:
            del spec["oncall"]  # stored as people write them: a tier without schedules has no key
        tiers.append(spec)
    return tiers


def _narrowing(rule: NotificationRule) -> str:
    if rule.team_id:
        return f"team {rule.team.slug}"
    if rule.tag_id:
        return f"tag {rule.tag.name}"
    return "no team or tag"


def notification_rule_check(*, data: dict[str, Any], rule: NotificationRule | None = None) -> NotificationRule:
    """Apply ``data`` to a rule without saving it; raise InvalidInput naming every bad field.

    ``team`` is a team slug, ``tag`` a tag name (or the objects). Tier errors are named
    ``escalation_tiers[i].channels`` and so on. The admin form calls this to show errors next
    to the fields; ``notification_rule_save`` calls it before saving.
    """
    fields_known(data, RULE_FIELDS)
    rule = rule or NotificationRule()
    errors: dict[str, list[str]] = {}
    for name, value in data.items():
        if name == "team":
            rule.team = team_named(value, name, errors)
        elif name == "tag":
            rule.tag = tag_named(value, name, errors)
        elif name not in (*TIER_KEYS, "escalation_tiers"):
            setattr(rule, name, value)
    # Some kinds are not for routing (Jira: tickets follow the Jira settings).
    channels = {c.name: c for c in Channel.objects.exclude(kind__in=kinds_unrouted())}
    first = {key: data.get(key, getattr(rule, key)) for key in TIER_KEYS}
    _check_target(first, "", channels, errors)
    rule.channels, rule.recipients, rule.slack_channel = first["channels"], first["recipients"], first["slack_channel"]
    rule.oncall = first["oncall"]
    rule.escalation_tiers = _check_tiers(data.get("escalation_tiers", rule.escalation_tiers), channels, errors)
    if rule.team_id and rule.tag_id:
        errors.setdefault("tag", []).append("A rule narrows to a team or to a tag, not both.")
    try:
        rule.full_clean(
            exclude=["team", "tag", "channels", "recipients", "oncall", "escalation_tiers", *errors],
            validate_constraints=False,  # answered below with a message a person understands
        )
    except ValidationError as exc:
        for field_name, messages in exc.message_dict.items():
            errors.setdefault(field_name, []).extend(messages)
    if "severity" not in errors and "team" not in errors and "tag" not in errors:
        twin = NotificationRule.objects.filter(severity=rule.severity, team=rule.team, tag=rule.tag)
        if rule.pk:
            twin = twin.exclude(pk=rule.pk)
        if twin.exists():
            field = "team" if rule.team_id else "tag" if rule.tag_id else "severity"
            errors[field] = [f"There is already a notification rule for {rule.severity} with {_narrowing(rule)}."]
    if errors:
        raise InvalidInput(errors)
    return rule


@transaction.atomic
def notification_rule_save(
    *, user: AbstractBaseUser, data: dict[str, Any], rule: NotificationRule | None = None
) -> NotificationRule:
    """Create or change a notification rule: who hears about incidents of one severity (for one
    team or tag, or all), and who next when nobody acknowledges in time.

    Only roles holding the notification rule permissions (Admin) may do it. Every channel
    named must exist, every recipient must be an email address, each channel must have a
    target (recipients or on-call schedules for email, a Slack channel for the Slack bot, on-call
    schedules for SMS and voice), every schedule named must exist, and escalation tiers may hold
    only ``channels``, ``recipients``, ``slack_channel`` and ``oncall``.
    """
    perm = "integrations.change_notificationrule" if rule else "integrations.add_notificationrule"
    permission_require(user, perm, "manage notification rules")
    rule = notification_rule_check(data=data, rule=rule)
    rule._history_user = user
    rule.save()
    return rule


@transaction.atomic
def notification_rule_delete(*, user: AbstractBaseUser, rule: NotificationRule) -> None:
    """Delete a rule (recorded in its history). Incidents it routed stop escalating."""
    permission_require(user, "integrations.delete_notificationrule", "delete notification rules")
    rule._history_user = user
    rule.delete()


def channel_rules(channel: Channel) -> list[NotificationRule]:
    """The notification rules that name this channel, in any tier."""
    rules = NotificationRule.objects.select_related("team", "tag")
    return [rule for rule in rules if any(channel.name in (tier.get("channels") or []) for tier in rule.tiers())]


def notification_rules_rename_channel(*, user: Any, old: str, new: str) -> None:
    """A renamed channel stays routed: the rules (and their tiers) that named it name it anew."""

    def renamed(names: list[str]) -> list[str]:
        return [new if name == old else name for name in names or []]

    for rule in NotificationRule.objects.select_for_update(of=("self",)).order_by("pk"):
        tiers = [{**tier, "channels": renamed(tier.get("channels"))} for tier in rule.escalation_tiers or []]
        if old in (rule.channels or []) or tiers != (rule.escalation_tiers or []):
            rule.channels, rule.escalation_tiers = renamed(rule.channels), tiers
            rule._history_user = user
            rule.save(update_fields=["channels", "escalation_tiers", "updated_at"])
