"""``channels``, ``notification_rules``, ``data_sources`` and ``captures`` sections of ``apply_config``.

Channels go through ``channels.channel_save`` and rules through ``rules.notification_rule_save``,
the same services as the admin and the API; both need the Admin role (``--as``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from etl_monitor.config import ConfigContext, config_items, config_report, config_upsert
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.protection import SECRET_NAME_RE
from integrations.models import Capture, Channel, DataSource, NotificationRule
from integrations.notifications import channels, rules
from integrations.sources.services import CAPTURE_FIELDS, SOURCE_FIELDS, capture_save, data_source_save
from loaders.models import Severity


def _fields_refused(ctx: ConfigContext, path: str, item: dict[str, Any], allowed: tuple[str, ...]) -> bool:
    """Report every field the section does not take — a secret with its own message (files end up
    in Git) — and say whether there was any."""
    bad = [str(k) for k in item if k not in allowed]
    for field in bad:
        if SECRET_NAME_RE.search(field):
            message = "Secrets are not accepted from configuration files; set it in the admin or through the API."
        else:
            message = f"Unknown field (allowed: {', '.join(allowed)})."
        ctx.error(f"{path}.{field}", message)
    return bool(bad)


class _ItemsByName:
    """A section that is a list of items identified by ``name``: unknown and secret fields are
    refused, an item equal to what is stored is reported ``unchanged`` and not saved again (no
    history row), the rest go through the section's service; items not in the file are left alone.

    Where the items have a write-only secret (``clears_secret``), ``secret: null`` clears the
    stored one: clearing carries no secret; any other value is refused like every secret."""

    key: str
    allowed: tuple[str, ...]
    clears_secret = False

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        for path, item in config_items(value, self.key, ctx, "name"):
            clearing = self.clears_secret and "secret" in item and item["secret"] is None
            allowed = (*self.allowed, "secret") if clearing else self.allowed
            if not _fields_refused(ctx, path, item, allowed):
                self._apply_one(path, item, ctx)

    def stored(self, name: str) -> Any:
        raise NotImplementedError

    def current(self, existing: Any, field: str) -> Any:
        """The stored value of ``field``, comparable with what a file holds (a secret: only
        whether there is one — None when there is none, as ``secret: null`` asks)."""
        if field == "secret":
            return "(stored)" if existing is not None and existing.secret else None
        return getattr(existing, field, None)

    def save(self, path: str, data: dict[str, Any], existing: Any, ctx: ConfigContext) -> None:
        """Create or change through the service; raises ServiceError."""
        raise NotImplementedError

    def _apply_one(self, path: str, item: dict[str, Any], ctx: ConfigContext) -> None:
        name = item["name"]
        existing = self.stored(name)
        changed = [k for k, v in item.items() if k != "name" and self.current(existing, k) != v]
        if existing is not None and not changed:
            ctx.change(self.key, name, "unchanged")
            return
        try:
            with transaction.atomic():
                self.save(path, dict(item), existing, ctx)
        except ServiceError as exc:
            config_report(ctx, path, exc)
            return
        ctx.change(self.key, name, "created" if existing is None else "changed", [] if existing is None else changed)


class ChannelsSection(_ItemsByName):
    """``channels: [{name, kind, url, enabled}]`` — the non-secret settings of notification channels.

    ``name`` identifies the channel (rules refer to it); ``kind`` is EMAIL, SLACK,
    SLACK_WEBHOOK or WEBHOOK; ``url`` is where a generic webhook posts. Secrets (a Slack bot
    token, an incoming-webhook URL, a signing secret) are refused here: files end up in Git.
    Set them in the admin or through the API; a Slack incoming webhook, which needs its URL
    to exist, is therefore created there. ``secret: null`` clears a stored secret. Channels not
    in the file are left alone. Applied before ``notification_rules`` so a rule may name a
    channel created in the same file.
    """

    key = "channels"
    order = 35
    allowed = ("name", "kind", "url", "enabled")
    clears_secret = True

    def stored(self, name: str) -> Channel | None:
        return Channel.objects.filter(name=name).first()

    def _apply_one(self, path: str, item: dict[str, Any], ctx: ConfigContext) -> None:
        # Saving also marks an unhealthy channel healthy: only a real change may do that, which
        # the base class ensures by not saving an unchanged channel.
        super()._apply_one(path, {k: ("" if k == "url" and v is None else v) for k, v in item.items()}, ctx)

    def save(self, path: str, data: dict[str, Any], existing: Channel | None, ctx: ConfigContext) -> None:
        try:
            channels.channel_save(user=ctx.user, data=data, channel=existing)
        except InvalidInput as exc:
            if "secret" in exc.errors:
                ctx.error(
                    f"{path}.kind",
                    "This kind needs a secret (a Slack incoming webhook needs its URL), which files may not "
                    "carry: create the channel in the admin; the file may then manage it.",
                )
                exc.errors.pop("secret")
            raise


RULE_KEYS = tuple(f for f in rules.RULE_FIELDS if f not in ("severity", "team", "tag"))


class NotificationRulesSection:
    """``notification_rules``: per severity, who is told and who next (the roadmap's shape).

    ::

        notification_rules:
          CRITICAL:
            channels: [email, slack]
            recipients: [oncall-team@company.com]
            slack_channel: "#alerts-critical"
            oncall: [data-platform]           # optional: on-call schedules whose people are told
            escalation_timeout: 300           # seconds; null = no escalation
            escalation_tiers:                 # optional: who next, in order
              - {channels: [email], recipients: [cto@company.com]}
            escalation_repeat: 1              # optional: times the last tier is told again
            repeat_interval: 3600             # optional: reminder while it keeps firing
            enabled: true                     # optional
            overrides:                        # optional: other routing for a team or a tag
              - team: finance                 # a team slug …
                channels: [email]
                recipients: [finance-oncall@company.com]
              - tag: payments                 # … or a tag name (one of the two)
                channels: [slack]
                slack_channel: "#payments-alerts"

    Each severity key is that severity's default rule. Each ``overrides`` entry is a rule of
    its own for one team or one tag, used instead of the default for that team's or tag's
    loaders (a team's rule wins over a tag's). An override inherits nothing from the default:
    what it says is what routes. Keys left out of an existing rule keep their stored values;
    rules not in the file are left alone (set ``enabled: false`` to stop one). Channels must
    exist (or be listed under ``channels`` in the same file). Errors name the key path, e.g.
    ``notification_rules.CRITICAL.recipients``.
    """

    key = "notification_rules"
    order = 40

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        if not isinstance(value, dict):
            ctx.error(self.key, "Must be a mapping of severity to its rule, e.g. CRITICAL: {channels: [email]}.")
            return
        for severity, spec in value.items():
            path = f"{self.key}.{severity}"
            if severity not in Severity.values:
                ctx.error(path, f"Unknown severity (one of {', '.join(Severity.values)}).")
                continue
            if not isinstance(spec, dict):
                ctx.error(path, "Must be a mapping with channels, recipients, slack_channel, escalation_timeout…")
                continue
            data = {k: v for k, v in spec.items() if k != "overrides"}
            if self._unknown(path, data, ctx):
                continue
            self._upsert(path, severity, data, ctx)
            self._overrides(path, severity, spec.get("overrides"), ctx)

    def _unknown(self, path: str, data: dict[str, Any], ctx: ConfigContext, narrowing: str = "") -> bool:
        unknown = [str(k) for k in data if k not in RULE_KEYS and k != narrowing]
        for name in unknown:
            hint = " (a team or a tag goes in an overrides entry)" if name in ("team", "tag") else ""
            ctx.error(f"{path}.{name}", f"Unknown field{hint}.")
        return bool(unknown)

    def _overrides(self, path: str, severity: str, overrides: Any, ctx: ConfigContext) -> None:
        if overrides is None:
            return
        if not isinstance(overrides, list):
            ctx.error(f"{path}.overrides", "Must be a list of rules, each with a team or a tag.")
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(overrides):
            item_path = f"{path}.overrides[{index}]"
            if not isinstance(item, dict):
                ctx.error(item_path, "Must be a mapping with a team or a tag and the rule's keys.")
                continue
            narrowing = [k for k in ("team", "tag") if k in item]
            if len(narrowing) != 1 or not isinstance(item[narrowing[0]], str) or not item[narrowing[0]]:
                ctx.error(item_path, "Give exactly one of team (a team slug) or tag (a tag name).")
                continue
            who = f"{narrowing[0]} {item[narrowing[0]]}"
            if who in seen:
                ctx.error(f"{item_path}.{narrowing[0]}", f"Duplicate override (also at overrides[{seen[who]}]).")
                continue
            seen[who] = index
            if not self._unknown(item_path, item, ctx, narrowing=narrowing[0]):
                self._upsert(item_path, severity, dict(item), ctx)

    def _upsert(self, path: str, severity: str, data: dict[str, Any], ctx: ConfigContext) -> None:
        team, tag = data.get("team"), data.get("tag")
        existing = NotificationRule.objects.filter(
            severity=severity,
            **({"team__slug": team} if team else {"team__isnull": True}),
            **({"tag__name": tag} if tag else {"tag__isnull": True}),
        ).first()
        label = severity + (f" team {team}" if team else f" tag {tag}" if tag else "")
        save = partial(rules.notification_rule_save, user=ctx.user, data={**data, "severity": severity}, rule=existing)
        config_upsert(ctx, section=self.key, key=label, path=path, existing=existing, save=save, snapshot=_snapshot)


def _snapshot(rule: NotificationRule | None) -> dict[str, Any]:
    if rule is None:
        return {}
    values = {f: getattr(rule, f) for f in rules.RULE_FIELDS if f not in ("team", "tag")}
    values["team"], values["tag"] = rule.team_id, rule.tag_id
    return values


class DataSourcesSection(_ItemsByName):
    """``data_sources: [{name, kind, url, auth, username, verify_tls, timeout_seconds, enabled}]``.

    ``kind`` is PROMETHEUS or ELASTICSEARCH; ``auth`` NONE (default), BASIC, BEARER or API_KEY.
    Secrets (passwords, tokens, API keys) are refused: files end up in Git. A source whose
    authentication needs one is created in the admin (which takes the secret); the file may then
    manage its other settings. ``secret: null`` clears a stored secret (with ``auth: NONE``).
    Sources not in the file are left alone. Only the Admin role may apply it: the server fetches
    the URL.
    """

    key = "data_sources"
    order = 25  # before detection_rules, which may name a source
    allowed = SOURCE_FIELDS
    clears_secret = True

    def stored(self, name: str) -> DataSource | None:
        return DataSource.objects.filter(name=name).first()

    def save(self, path: str, data: dict[str, Any], existing: DataSource | None, ctx: ConfigContext) -> None:
        clear = "secret" in data and data.pop("secret") is None
        data_source_save(user=ctx.user, data=data, source=existing, secret_clear=clear)


class CapturesSection(_ItemsByName):
    """``captures: [{name, loader, source, source_kind, query, key_label, metric_type, …}]`` —
    statistics capture definitions (see docs/monitoring.md). ``loader`` is a loader code (the
    STATS-* loaders, or your own). Captures not in the file are left alone. Admin only: the query
    runs on the server against a data source."""

    key = "captures"
    order = 27  # after loaders and data_sources, which it names
    allowed = CAPTURE_FIELDS

    def stored(self, name: str) -> Capture | None:
        return Capture.objects.select_related("loader").filter(name=name).first()

    def current(self, existing: Capture | None, field: str) -> Any:
        if existing is not None and field == "loader":
            return existing.loader.loader_code
        return super().current(existing, field)

    def save(self, path: str, data: dict[str, Any], existing: Capture | None, ctx: ConfigContext) -> None:
        capture_save(user=ctx.user, data=data, capture=existing)
