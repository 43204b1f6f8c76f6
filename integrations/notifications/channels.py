"""Notification channels: every write of a ``Channel`` row, and what a channel can do.

Saving (``channel_save``, which also marks the channel healthy again), deleting (``channel_delete``,
refused while a rule names it or deliveries record it), and the health the outbox records as it
sends (``channels_mark_sent``, ``channel_mark_unhealthy``, which emails the admins) all happen
here; the admin, the API and ``apply_config`` call these services. ``channel_configured`` says why
a channel cannot send, which routing and the test ask before they queue anything.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from etl_monitor.crypto import UNDECRYPTABLE, secret_undecryptable
from etl_monitor.errors import InvalidInput, StateConflict, model_validate
from etl_monitor.permissions import permission_require
from integrations.models import Channel, Delivery
from integrations.notifications.rules import channel_rules, notification_rules_rename_channel
from integrations.notifications.transports import transport_for, transport_kinds
from loaders.models import Severity

logger = logging.getLogger(__name__)


def channel_configured(channel: Channel) -> str | None:
    """Why a channel cannot send (None = it can): disabled, a secret no key reads, or what its
    transport lacks."""
    if not channel.enabled:
        return "disabled"
    if secret_undecryptable(channel.secret):
        return UNDECRYPTABLE
    return transport_for(channel).configured()


@transaction.atomic
def channel_save(*, user: Any, data: dict[str, Any], channel: Channel | None = None) -> Channel:
    """Create or change a channel; saving makes it healthy again.

    ``secret``: a new one replaces the stored one; empty (or absent) keeps it; ``None`` clears
    it. Clearing is always allowed: a channel whose kind needs the secret then cannot send, and
    ``channel_configured`` says why. The history records that the secret was cleared, never a
    value (the secret is not in the history at all)."""
    perm = "integrations.change_channel" if channel else "integrations.add_channel"
    permission_require(user, perm, "manage notification channels")
    allowed = {"name", "kind", "enabled", "url", "secret"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput({name: ["Unknown field."] for name in unknown})
    channel = channel or Channel()
    old_name, old_kind = (channel.name, channel.kind) if channel.pk else (None, None)
    clear = "secret" in data and data["secret"] is None
    for name, value in data.items():
        if name == "secret" and not value:
            continue
        setattr(channel, name, value)
    if clear:
        channel.secret = ""
    # An unknown kind has no transport to ask: model_validate names it.
    errors = transport_for(channel).check() if channel.kind in transport_kinds() else {}
    if not channel.secret and old_kind is not None and (clear or channel.kind == old_kind):
        # Cleared (now, or before this change): not a reason to refuse saving; channel_configured
        # reports it. A new channel, or one changing kind, still needs what its kind needs.
        errors.pop("secret", None)
    model_validate(channel, errors)
    channel.healthy, channel.unhealthy_reason, channel.unhealthy_since = True, "", None
    channel._history_user = user
    channel._change_reason = "secret cleared" if clear else None
    channel.save()
    if old_name and old_name != channel.name:
        notification_rules_rename_channel(user=user, old=old_name, new=channel.name)
    return channel


@transaction.atomic
def channel_delete(*, user: AbstractBaseUser, channel: Channel) -> None:
    """Delete a channel nobody routes to and that never sent anything.

    A channel named by a rule would make that rule notify nobody; a channel with deliveries
    would take its outbox records (who was told, when) with it. Disable it instead."""
    permission_require(user, "integrations.delete_channel", "delete notification channels")
    if rules := channel_rules(channel):
        named = ", ".join(str(rule) for rule in rules)
        raise StateConflict(
            f"Channel {channel.name} is used by the notification rule(s) {named}; remove it there first."
        )
    if sent := Delivery.objects.filter(channel=channel).count():
        raise StateConflict(
            f"Channel {channel.name} has {sent} deliveries, the record of who was told; disable it instead."
        )
    channel._history_user = user
    channel.delete()


def channel_test_target(channel: Channel, user: Any = None) -> str:
    """Where a test message goes when nobody says ("" = nowhere known): the transport chooses,
    knowing who asks (``user``, None when unknown) and the tiers of the rules that route to the
    channel, least severe rule first (the Slack bot takes that rule's Slack channel)."""
    rank = {severity: index for index, severity in enumerate(Severity.values)}
    rules = sorted(channel_rules(channel), key=lambda r: (not r.enabled, -rank.get(r.severity, 0), r.pk))
    tiers = [tier for rule in rules for tier in rule.tiers() if channel.name in (tier.get("channels") or [])]
    return transport_for(channel).test_target(user, tiers)


def channel_mark_unhealthy(channel: Channel, reason: str) -> None:
    """Flag the channel (admin banner) and, the first time, email the admins — unless email is
    the broken channel."""
    now = timezone.now()
    changed = Channel.objects.filter(pk=channel.pk, healthy=True).update(
        healthy=False, unhealthy_reason=reason, unhealthy_since=now
    )
    Channel.objects.filter(pk=channel.pk).update(unhealthy_reason=reason)
    if not changed:
        return
    logger.error("notification channel %s is unhealthy: %s", channel.name, reason)
    if transport_for(channel).uses_admin_mail:
        return
    admins = list(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name="Admin"))
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    if admins:
        send_mail(
            f"[ETL Monitor] Notification channel {channel.name} is not working",
            f"Sending through the channel {channel.name} ({channel.get_kind_display()}) failed with an error "
            f"that retrying will not fix:\n\n  {reason}\n\nFix its configuration in the admin "
            f"({settings.ETL_MONITOR_BASE_URL.rstrip('/')}/admin/integrations/channel/{channel.pk}/change/); "
            "saving it marks it healthy again. Deliveries that gave up can be retried from the delivery list.",
            settings.DEFAULT_FROM_EMAIL,
            admins,
            fail_silently=True,
        )


def channels_mark_sent(channel_ids: set[int], now: dt.datetime) -> None:
    """The channels just delivered a message: their last success is now."""
    Channel.objects.filter(pk__in=channel_ids).update(last_success_at=now)
