"""Writes to schedules, their layers and overrides, and calendar feed tokens: the rules enforced
here and nowhere else (the admin and the API both call these).

- Operators manage schedules, rotations with their members, and overrides (``oncall.*`` perms,
  see ``etl_monitor.roles``); everyone else reads them.
- A schedule's time zone is a real IANA zone; a rotation's restriction is both times or neither,
  and two different times; its members are active accounts, in the order given (the first takes
  the first shift); an override ends after it starts and puts an active person on call.
- A calendar feed's URL carries a secret token of which only a digest is kept (as for API
  tokens): anyone may make one for their own shifts; a schedule's feed needs
  ``oncall.change_schedule``. The key is returned once. A revoked token stays for the record.
Errors name the field and write nothing; every row written records who wrote it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused, fields_known, model_validate
from etl_monitor.permissions import permission_require
from etl_monitor.tokens import LAST_USED_RESOLUTION, token_digest
from loaders.validators import validate_timezone_name
from oncall.models import CalendarToken, Override, Rotation, RotationMember, Schedule

SCHEDULE_FIELDS = ("name", "slug", "timezone", "team", "description")
ROTATION_FIELDS = ("name", "layer", "handoff", "handoff_time", "start_date", "restrict_start", "restrict_end")
OVERRIDE_FIELDS = ("user", "start", "end", "covers", "reason")

CALENDAR_KEY_PREFIX = "etlc_"  # tells a calendar feed's token from an API (etlu_) or ingest (etlm_) one


def _apply(instance: Any, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    fields_known(data, allowed)
    for name, value in data.items():
        setattr(instance, name, value)


def schedule_check(*, data: dict[str, Any], schedule: Schedule | None = None) -> Schedule:
    """``data`` applied to ``schedule`` (or a new one) and validated, nothing saved: what
    ``schedule_save`` checks, for a form to show the errors on its fields."""
    schedule = schedule or Schedule()
    _apply(schedule, data, SCHEDULE_FIELDS)
    errors: dict[str, list[str]] = {}
    try:
        validate_timezone_name(schedule.timezone or "")
    except ValidationError as exc:
        errors["timezone"] = exc.messages
    model_validate(schedule, errors)
    return schedule


@transaction.atomic
def schedule_save(*, user: AbstractBaseUser, data: dict[str, Any], schedule: Schedule | None = None) -> Schedule:
    """Create or change a schedule: its name, slug (how notification rules name it), time zone
    (where hand-offs are read), team and description."""
    perm = "oncall.change_schedule" if schedule else "oncall.add_schedule"
    permission_require(user, perm, "manage on-call schedules")
    schedule = schedule_check(data=data, schedule=schedule)
    schedule._history_user = user
    schedule.save()
    return schedule


@transaction.atomic
def schedule_delete(*, user: AbstractBaseUser, schedule: Schedule) -> None:
    """Remove a schedule with its layers, overrides and feeds. Notification rules naming its slug
    then find nobody on call there, and escalate past that tier as for any gap."""
    permission_require(user, "oncall.delete_schedule", "delete on-call schedules")
    schedule._history_user = user
    schedule.delete()


def rotation_check(
    *,
    schedule: Schedule,
    data: dict[str, Any],
    members: Sequence[AbstractBaseUser] | None = None,
    rotation: Rotation | None = None,
) -> Rotation:
    """``data`` applied to ``rotation`` (or a new layer of ``schedule``) and validated with its
    ``members``, nothing saved: what ``rotation_save`` checks, for a form to show on its fields."""
    if rotation is not None and rotation.schedule_id != schedule.pk:
        raise InvalidInput({"schedule": ["This rotation belongs to another schedule."]})
    rotation = rotation or Rotation(schedule=schedule)
    _apply(rotation, data, ROTATION_FIELDS)
    errors: dict[str, list[str]] = {}
    if (rotation.restrict_start is None) != (rotation.restrict_end is None):
        missing = "restrict_end" if rotation.restrict_end is None else "restrict_start"
        errors[missing] = ["Give both restriction times, or neither for the whole day."]
    elif rotation.restrict_start is not None and rotation.restrict_start == rotation.restrict_end:
        errors["restrict_end"] = ["Must differ from the start; leave both empty for the whole day."]
    if members is not None:
        inactive = [str(member) for member in members if not member.is_active]
        if inactive:
            errors["members"] = [f"Not an active account: {', '.join(inactive)}."]
    model_validate(rotation, errors, exclude=("schedule",))
    return rotation


@transaction.atomic
def rotation_save(
    *,
    user: AbstractBaseUser,
    schedule: Schedule,
    data: dict[str, Any],
    members: Sequence[AbstractBaseUser] | None = None,
    rotation: Rotation | None = None,
) -> Rotation:
    """Create or change one layer of ``schedule``; ``members`` (when given) replace its people, in
    turn order. Changing the order changes who is on call from now on: shifts are counted from
    ``start_date``, so the turn of the current shift goes to whoever is at its place now."""
    perm = "oncall.change_rotation" if rotation else "oncall.add_rotation"
    permission_require(user, perm, "manage on-call rotations")
    if members is not None:
        for needed in ("add", "delete"):
            permission_require(user, f"oncall.{needed}_rotationmember", "choose who is in a rotation")
    rotation = rotation_check(schedule=schedule, data=data, members=members, rotation=rotation)
    rotation.schedule = schedule  # saved by now, when the admin adds a schedule with its layers
    rotation._history_user = user
    rotation.save()
    if members is not None:
        for old in rotation.members.all():
            old._history_user = user
            old.delete()
        for position, member in enumerate(members):
            row = RotationMember(rotation=rotation, user=member, position=position)
            row._history_user = user
            row.save()
    return rotation


@transaction.atomic
def rotation_delete(*, user: AbstractBaseUser, rotation: Rotation) -> None:
    """Remove a layer (and its members) from its schedule."""
    permission_require(user, "oncall.delete_rotation", "manage on-call rotations")
    rotation._history_user = user
    rotation.delete()


def override_check(*, schedule: Schedule, data: dict[str, Any], override: Override | None = None) -> Override:
    """``data`` applied to ``override`` (or a new one in ``schedule``) and validated, nothing
    saved: what ``override_save`` checks, for a form to show on its fields."""
    if override is not None and override.schedule_id != schedule.pk:
        raise InvalidInput({"schedule": ["This override belongs to another schedule."]})
    override = override or Override(schedule=schedule)
    _apply(override, data, OVERRIDE_FIELDS)
    errors: dict[str, list[str]] = {}
    for name in ("start", "end"):
        moment = getattr(override, name)
        if moment is not None and timezone.is_naive(moment):
            errors[name] = ["Give the time with its time zone."]
    if not errors and override.start and override.end and override.end <= override.start:
        errors["end"] = ["Must be after the start."]
    person = override.user if override.user_id else None
    if person is not None and not person.is_active:
        errors["user"] = [f"{person} is not an active account."]
    model_validate(override, errors, exclude=("schedule", "created_by"))
    return override


@transaction.atomic
def override_save(
    *, user: AbstractBaseUser, schedule: Schedule, data: dict[str, Any], override: Override | None = None
) -> Override:
    """Put ``data["user"]`` on call in ``schedule`` from ``start`` to ``end``, over every layer
    (``covers``: whose shift it takes, for the record; ``reason``: why)."""
    perm = "oncall.change_override" if override else "oncall.add_override"
    permission_require(user, perm, "manage on-call overrides")
    override = override_check(schedule=schedule, data=data, override=override)
    override.schedule = schedule
    if override.pk is None:
        override.created_by = user
    override._history_user = user
    override.save()
    return override


@transaction.atomic
def override_delete(*, user: AbstractBaseUser, override: Override) -> None:
    """Remove an override: the layers answer again for its period."""
    permission_require(user, "oncall.delete_override", "manage on-call overrides")
    override._history_user = user
    override.delete()


@transaction.atomic
def calendar_token_create(*, user: AbstractBaseUser, schedule: Schedule | None = None) -> tuple[CalendarToken, str]:
    """A calendar feed of ``schedule`` (needs ``oncall.change_schedule``), or of ``user``'s own
    shifts across schedules when no schedule is given. Returns the token with its key, which is
    never stored or shown again."""
    if not user.is_active:
        raise PermissionRefused("This account is inactive.")
    if schedule is not None:
        permission_require(user, "oncall.change_schedule", "publish a schedule's calendar feed")
    raw = CALENDAR_KEY_PREFIX + secrets.token_urlsafe(32)
    token = CalendarToken.objects.create(
        schedule=schedule,
        user=None if schedule is not None else user,
        created_by=user,
        prefix=raw[:12],
        token_hash=token_digest(raw),
    )
    return token, raw


@transaction.atomic
def calendar_token_revoke(*, user: AbstractBaseUser, token: CalendarToken) -> CalendarToken:
    """Revoke a feed for good (idempotent): a person's own feed by them, a schedule's feed by
    whoever may change the schedule; an Admin may revoke any."""
    own = token.user_id is not None and token.user_id == user.pk
    allowed = own or user.has_perm("oncall.change_calendartoken")
    if token.schedule_id is not None:
        allowed = allowed or user.has_perm("oncall.change_schedule")
    if not (user.is_active and allowed):
        raise PermissionRefused("You may revoke only your own calendar feeds.")
    token = CalendarToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at, token.revoked_by = timezone.now(), user
        token.save(update_fields=["revoked_at", "revoked_by"])
    return token


def calendar_token_find(raw: str) -> CalendarToken | None:
    """The live token whose key is ``raw`` (None when unknown, revoked, or its person is
    inactive: the feed answers 404 alike, telling nothing); records its last use."""
    if not raw or len(raw) > 200:
        return None
    token = (
        CalendarToken.objects.select_related("schedule", "user")
        .filter(token_hash=token_digest(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or (token.user is not None and not token.user.is_active):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        CalendarToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
