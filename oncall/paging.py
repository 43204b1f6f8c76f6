"""Whom a page may reach: people's verified phones, filtered by their paging preferences.

A person is paged by SMS or by a call only through a verified phone (``ContactMethod`` PHONE with
``verified_at``), and only for the severities their ``PagingPreference`` lists for that method;
in their quiet hours (read in their time zone; an end before the start crosses midnight) only for
the quiet severities. A person without a preference row has the model's defaults. The SMS and
voice channels (``integrations.notifications.transports``) ask here; the inbound side (replies,
key presses) asks ``phone_owner`` who is answering.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from oncall.models import ContactKind, ContactMethod, PagingPreference

PageMethodName = Literal["sms", "voice"]


def in_quiet_hours(preference: PagingPreference, at: dt.datetime) -> bool:
    """Whether ``at`` falls in the person's quiet hours, read in their time zone: from
    ``quiet_start`` (included) to ``quiet_end`` (excluded), across midnight when the end comes
    first; none unless both are set (equal ones mean none)."""
    start, end = preference.quiet_start, preference.quiet_end
    if start is None or end is None or start == end:
        return False
    try:
        zone = ZoneInfo(preference.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")  # a zone the system no longer knows: read the hours in UTC
    local = at.astimezone(zone).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def page_allowed(preference: PagingPreference, method: PageMethodName, severity: str, at: dt.datetime) -> bool:
    """Whether the preference lets ``method`` page for ``severity`` at ``at``."""
    wanted = preference.sms_severities if method == "sms" else preference.voice_severities
    if severity not in (wanted or []):
        return False
    return not in_quiet_hours(preference, at) or severity in (preference.quiet_severities or [])


def pageable_phones(
    user_ids: list[int] | set[int], method: PageMethodName, severity: str, at: dt.datetime
) -> dict[int, str]:
    """User id → verified E.164 phone, for those of ``user_ids`` whose preferences let ``method``
    page them for ``severity`` at ``at`` (two queries). A person with several verified phones is
    paged on the first they verified."""
    if method not in ("sms", "voice"):
        raise ValueError(f"method must be 'sms' or 'voice', not {method!r}")
    ids = set(user_ids)
    if not ids:
        return {}
    phones: dict[int, str] = {}
    verified = ContactMethod.objects.filter(user_id__in=ids, kind=ContactKind.PHONE, verified_at__isnull=False)
    for user_id, value in verified.order_by("verified_at", "pk").values_list("user_id", "value"):
        phones.setdefault(user_id, value)
    if not phones:
        return {}
    preferences = {p.user_id: p for p in PagingPreference.objects.filter(user_id__in=phones)}
    return {
        user_id: phone
        for user_id, phone in phones.items()
        if page_allowed(preferences.get(user_id) or PagingPreference(user_id=user_id), method, severity, at)
    }


def phone_owner(phone: str) -> Any | None:
    """The person whose verified phone this is (one at most: a verified number has one owner), or None."""
    method = (
        ContactMethod.objects.filter(kind=ContactKind.PHONE, value=phone, verified_at__isnull=False)
        .select_related("user")
        .first()
    )
    return method.user if method is not None else None


def phone_owners(phones: list[str] | set[str]) -> dict[str, Any]:
    """Phone → its verified owner, for those of ``phones`` that have one (one query)."""
    methods = ContactMethod.objects.filter(
        kind=ContactKind.PHONE, value__in=set(phones), verified_at__isnull=False
    ).select_related("user")
    return {method.value: method.user for method in methods}
