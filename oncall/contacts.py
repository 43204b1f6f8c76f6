"""Contact methods and paging preferences: the services the admin, the API and config call.

Rules enforced here and nowhere else:
- A person manages their own contact methods and paging preference; someone else's needs
  ``oncall.change_contactmethod`` / ``oncall.change_pagingpreference`` (the Admin role).
- A phone is E.164 (``+14155550100``; spaces, dashes, dots and brackets are dropped first), an email
  a valid address, a Slack id a user id (``U024BE7LH``); every such error names the field ``value``.
- An email or Slack id added by its owner or an admin is verified at once; a phone only by the code
  sent to it (``phone_verification_send`` then ``phone_verify``), since a page to a mistyped number
  wakes a stranger and an SMS reply from it would act as its owner.
- A code is six digits from ``secrets``, kept only as a keyed digest, never logged nor shown again;
  one code a minute per phone; it expires after ONCALL_VERIFY_CODE_MINUTES and dies after
  ONCALL_VERIFY_MAX_ATTEMPTS wrong tries (a new one must be sent).
- A number, email or Slack id has at most one verified owner: an inbound SMS names its sender by
  number. Verifying one that someone else has verified is a StateConflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import zoneinfo
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from etl_monitor.errors import InvalidInput, StateConflict, fields_known, model_validate
from etl_monitor.permissions import permission_require
from loaders.models import Severity
from oncall import providers
from oncall.models import ContactKind, ContactMethod, PagingPreference

logger = logging.getLogger(__name__)

PHONE_PATTERN = re.compile(r"^\+[1-9]\d{7,14}$")
SLACK_ID_PATTERN = re.compile(r"^[UW][A-Z0-9]{6,}$")
PHONE_PUNCTUATION = re.compile(r"[\s\-.()]")
CODE_RESEND_SECONDS = 60
PREFERENCE_FIELDS = ("timezone", "sms_severities", "voice_severities", "quiet_start", "quiet_end", "quiet_severities")


def _manage_require(user: Any, owner: Any, perm: str, doing: str) -> None:
    """One's own: any active account; someone else's: ``perm``."""
    if user is not None and user.is_active and owner is not None and user.pk == owner.pk:
        return
    permission_require(user, perm, doing)


def contact_value_normalise(kind: str, value: str) -> str:
    """The stored form of ``value`` for ``kind``, or InvalidInput naming ``kind`` or ``value``."""
    if kind not in ContactKind.values:
        raise InvalidInput({"kind": [f"Choose one of {', '.join(ContactKind.values)}."]})
    value = (value or "").strip()
    if not value:
        raise InvalidInput({"value": ["This field is required."]})
    if kind == ContactKind.PHONE:
        phone = PHONE_PUNCTUATION.sub("", value)
        if not PHONE_PATTERN.match(phone):
            raise InvalidInput(
                {"value": ["Enter the number in international (E.164) form: + then 8 to 15 digits, e.g. +14155550100."]}
            )
        return phone
    if kind == ContactKind.EMAIL:
        try:
            validate_email(value)
        except ValidationError:
            raise InvalidInput({"value": ["Enter a valid email address, e.g. alice@example.com."]}) from None
        return value
    if not SLACK_ID_PATTERN.match(value):
        raise InvalidInput(
            {"value": ["Enter a Slack user id (U or W then capitals and digits, e.g. U024BE7LH), not a name."]}
        )
    return value


def _verified_elsewhere(method: ContactMethod) -> bool:
    return (
        ContactMethod.objects.filter(kind=method.kind, value=method.value, verified_at__isnull=False)
        .exclude(pk=method.pk)
        .exists()
    )


def _taken(method: ContactMethod) -> StateConflict:
    return StateConflict(
        f"{method.value} is already verified by another person: one {method.get_kind_display().split(' (')[0].lower()} "
        "names one person (replies from it act as them). Ask an admin to remove theirs first."
    )


def contact_add(*, user: Any, owner: Any, kind: str, value: str, now: dt.datetime | None = None) -> ContactMethod:
    """Add a way to reach ``owner``. An email or Slack id is verified at once (its owner or an admin
    vouches for it); a phone waits for its code (``phone_verification_send``)."""
    _manage_require(user, owner, "oncall.change_contactmethod", "manage other people's contact methods")
    value = contact_value_normalise(kind, value)
    if ContactMethod.objects.filter(user=owner, kind=kind, value=value).exists():
        raise InvalidInput({"value": [f"{owner} already has {value}."]})
    method = ContactMethod(user=owner, kind=kind, value=value)
    if kind != ContactKind.PHONE:
        method.verified_at = now or timezone.now()
        if _verified_elsewhere(method):
            raise _taken(method)
    try:
        with transaction.atomic():
            method.save()
    except IntegrityError:  # someone added or verified the same value meanwhile
        raise _taken(method) if method.verified_at else InvalidInput({"value": [f"{owner} already has {value}."]})
    return method


def contact_delete(*, user: Any, method: ContactMethod) -> None:
    """Remove a contact method (pages stop going there at once)."""
    _manage_require(user, method.user, "oncall.change_contactmethod", "manage other people's contact methods")
    method.delete()


def _code_digest(method: ContactMethod, code: str) -> str:
    """Keyed by SECRET_KEY and the method: a copied database does not give the six digits away
    by trying the million of them."""
    return hmac.new(settings.SECRET_KEY.encode(), f"{method.pk}:{code}".encode(), hashlib.sha256).hexdigest()


def _phone_require(method: ContactMethod) -> None:
    if method.kind != ContactKind.PHONE:
        raise StateConflict("Only a phone is verified by a code; an email or Slack id is verified when added.")
    if method.verified_at:
        raise StateConflict(f"{method.value} is verified already.")


def phone_verification_send(*, user: Any, method: ContactMethod, now: dt.datetime | None = None) -> None:
    """Text a new six-digit code to an unverified phone (it replaces any earlier one). At most one a
    minute: a code costs money and a stranger's number must not be flooded from here."""
    _manage_require(user, method.user, "oncall.change_contactmethod", "manage other people's contact methods")
    _phone_require(method)
    missing = providers.twilio_configured()
    if missing:
        raise StateConflict(f"SMS is not configured, so no code can be sent: {missing}")
    now = now or timezone.now()
    code = f"{secrets.randbelow(10**6):06d}"
    digest = _code_digest(method, code)
    # Claim the minute first (a conditional update), so two clicks at once send one code.
    recent = now - dt.timedelta(seconds=CODE_RESEND_SECONDS)
    free = ContactMethod.objects.filter(pk=method.pk, verified_at__isnull=True).exclude(code_sent_at__gt=recent)
    previous = ContactMethod.objects.filter(pk=method.pk).values_list("code_sent_at", flat=True).first()
    if not free.update(code_hash=digest, code_sent_at=now, code_attempts=0):
        wait = CODE_RESEND_SECONDS - int((now - previous).total_seconds()) if previous else CODE_RESEND_SECONDS
        raise StateConflict(f"A code was sent less than a minute ago: wait {max(wait, 1)} s before asking again.")
    try:
        providers.sms_send(method.value, f"ETL Monitor code: {code}")
    except providers.ProviderError as exc:
        # Nothing reached the phone: give the minute back, and no code is valid.
        ContactMethod.objects.filter(pk=method.pk, code_hash=digest).update(code_hash="", code_sent_at=previous)
        raise StateConflict(f"The code could not be sent to {method.value}: {exc.reason}") from None
    logger.info("verification code sent to contact method %s of %s", method.pk, method.user)
    method.code_hash, method.code_sent_at, method.code_attempts = digest, now, 0


def phone_verify(*, user: Any, method: ContactMethod, code: str, now: dt.datetime | None = None) -> ContactMethod:
    """Mark the phone verified if ``code`` is the one last sent to it, in time and within the tries
    allowed. A wrong code counts (kept even though the call fails); the last allowed wrong try, or
    an expired code, needs a new code."""
    _manage_require(user, method.user, "oncall.change_contactmethod", "manage other people's contact methods")
    now = now or timezone.now()
    given = re.sub(r"\s", "", code or "")
    with transaction.atomic():
        method = ContactMethod.objects.select_for_update().get(pk=method.pk)
        _phone_require(method)
        refusal = _code_refusal(method, given, now)
        if refusal is None:
            if _verified_elsewhere(method):
                raise _taken(method)
            method.verified_at = now
            method.code_hash, method.code_sent_at, method.code_attempts = "", None, 0
            try:
                with transaction.atomic():
                    method.save()
            except IntegrityError:
                raise _taken(method) from None
            return method
        method.save(update_fields=["code_hash", "code_sent_at", "code_attempts"])
    raise InvalidInput({"code": [refusal]})


def _code_refusal(method: ContactMethod, given: str, now: dt.datetime) -> str | None:
    """Why ``given`` does not verify ``method`` (updating its code state), or None when it does."""
    if not method.code_hash or method.code_sent_at is None:
        return "No code is waiting for this phone: send one first."
    if now - method.code_sent_at > dt.timedelta(minutes=settings.ONCALL_VERIFY_CODE_MINUTES):
        method.code_hash, method.code_sent_at = "", None
        return f"The code has expired (after {settings.ONCALL_VERIFY_CODE_MINUTES} minutes): send a new one."
    if hmac.compare_digest(_code_digest(method, given), method.code_hash):
        return None
    method.code_attempts += 1
    if method.code_attempts >= settings.ONCALL_VERIFY_MAX_ATTEMPTS:
        method.code_hash, method.code_sent_at = "", None
        return "Wrong code, and too many wrong tries: send a new code."
    left = settings.ONCALL_VERIFY_MAX_ATTEMPTS - method.code_attempts
    return f"Wrong code ({left} {'try' if left == 1 else 'tries'} left)."


def _severities(data: dict[str, Any], field: str, errors: dict[str, list[str]]) -> list[str]:
    value = data[field]
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
        errors[field] = ["Give a list of severities."]
        return []
    unknown = sorted(set(value) - set(Severity.values))
    if unknown:
        errors[field] = [f"Unknown severity {', '.join(unknown)}: choose among {', '.join(Severity.values)}."]
    return [s for s in Severity.values if s in value]  # the canonical order, once each


def _time(value: Any, field: str, errors: dict[str, list[str]]) -> dt.time | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.time):
        return value
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        errors[field] = ["Enter a time as HH:MM, e.g. 22:00."]
        return None


def preference_save(*, user: Any, owner: Any, data: dict[str, Any]) -> PagingPreference:
    """Create or change ``owner``'s paging preference from ``data`` (any of PREFERENCE_FIELDS;
    those left out keep their value). Quiet hours are both ends or neither; an end before the
    start crosses midnight."""
    _manage_require(user, owner, "oncall.change_pagingpreference", "change other people's paging preferences")
    fields_known(data, PREFERENCE_FIELDS)
    errors: dict[str, list[str]] = {}
    preference = PagingPreference.objects.filter(user=owner).first() or PagingPreference(user=owner)
    for field in ("sms_severities", "voice_severities", "quiet_severities"):
        if field in data:
            setattr(preference, field, _severities(data, field, errors))
    if "timezone" in data:
        name = str(data["timezone"] or "").strip()
        if name not in zoneinfo.available_timezones():
            errors["timezone"] = [f"Unknown time zone {name!r}: use an IANA name such as Europe/Paris."]
        preference.timezone = name
    for field in ("quiet_start", "quiet_end"):
        if field in data:
            setattr(preference, field, _time(data[field], field, errors))
    if not errors.keys() & {"quiet_start", "quiet_end"}:
        start, end = preference.quiet_start, preference.quiet_end
        if (start is None) != (end is None):
            missing = "quiet_end" if end is None else "quiet_start"
            errors[missing] = ["Give both ends of the quiet hours, or neither."]
        elif start is not None and start == end:
            errors["quiet_end"] = ["The quiet hours end when they start: give a different end, or neither."]
    model_validate(preference, errors, exclude=("user",))
    preference.save()
    return preference
