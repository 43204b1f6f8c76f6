"""On-call schedules, the people in them, and how each person wants to be paged.

A *schedule* (``data-platform``) says who is on call at any moment: its *rotations* are layers,
each handing off daily or weekly at a local time in the schedule's time zone through an ordered
list of people; a higher layer wins where it has someone. An *override* puts one person on call
for a period, over every layer (a swap, or cover for someone). Notification rules' tiers name
schedules (``"oncall": ["data-platform"]``): whoever is on call then is paged.

A person's *contact methods* (a phone in E.164, an email, a Slack user id) are where pages go; a
phone pages only once verified by a code. Their *paging preference* says which severities reach
them by SMS and by voice, and which still do during their quiet hours.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from etl_monitor.models import HashedToken
from loaders.models import Severity, Team


class Schedule(models.Model):
    """Who is on call, when: rotations (layers) and overrides, read in ``timezone``."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(
        max_length=50, unique=True, help_text='How notification rules name it: "oncall": ["data-platform"].'
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Hand-offs happen at local times of this zone, e.g. Europe/Paris."
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Handoff(models.TextChoices):
    DAILY = "DAILY", "Daily"
    WEEKLY = "WEEKLY", "Weekly"


class Rotation(models.Model):
    """One layer of a schedule: people in turn, a shift each, handing off at ``handoff_time``.

    The first shift starts on ``start_date`` at ``handoff_time`` (local); weekly shifts last seven
    days. ``restrict_start``/``restrict_end`` (local times, both or neither) limit the layer to
    part of each day (e.g. a business-hours layer over a 24 h one; an end before the start crosses
    midnight). Where several layers have someone, the highest ``layer`` wins."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="rotations")
    name = models.CharField(max_length=100)
    layer = models.PositiveSmallIntegerField(default=1, help_text="Higher layers win where they have someone.")
    handoff = models.CharField(max_length=10, choices=Handoff.choices, default=Handoff.WEEKLY)
    handoff_time = models.TimeField(default="09:00", help_text="Local time of the hand-off.")
    start_date = models.DateField(help_text="The first shift starts on this day at the hand-off time.")
    restrict_start = models.TimeField(null=True, blank=True, help_text="Only covers from this local time…")
    restrict_end = models.TimeField(null=True, blank=True, help_text="…to this one (empty = all day).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["schedule", "-layer", "pk"]

    def __str__(self) -> str:
        return f"{self.schedule} · {self.name}"


class RotationMember(models.Model):
    """A person's place in a rotation's turn (``position`` 0 takes the first shift)."""

    rotation = models.ForeignKey(Rotation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    history = HistoricalRecords()

    class Meta:
        ordering = ["rotation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rotation", "position"], name="rotationmember_one_per_position"),
        ]

    def __str__(self) -> str:
        return f"{self.rotation} #{self.position + 1}: {self.user}"


class Override(models.Model):
    """``user`` is on call in ``schedule`` from ``start`` to ``end``, over every layer.
    ``covers``: whose shift it takes (a swap or cover, for the record; empty = extra cover)."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="overrides")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    covers = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["schedule", "start"]
        indexes = [models.Index(fields=["schedule", "end"], name="override_schedule_end")]
        constraints = [models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="override_ends_after_start")]

    def __str__(self) -> str:
        return f"{self.schedule}: {self.user} {self.start:%Y-%m-%d %H:%M}–{self.end:%Y-%m-%d %H:%M}"


class ContactKind(models.TextChoices):
    PHONE = "PHONE", "Phone (SMS and voice), E.164"
    EMAIL = "EMAIL", "Email"
    SLACK = "SLACK", "Slack user id"


class ContactMethod(models.Model):
    """Where a person is reached. A phone pages only once ``verified_at`` is set (by the code
    sent to it); an email or Slack id is verified when an admin or the person sets it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_methods")
    kind = models.CharField(max_length=10, choices=ContactKind.choices)
    value = models.CharField(max_length=200, help_text="+14155550100, alice@example.com, U024BE7LH")
    verified_at = models.DateTimeField(null=True, blank=True)
    code_hash = models.CharField(max_length=64, blank=True, editable=False)
    code_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    code_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(excluded_fields=["code_hash", "code_sent_at", "code_attempts"])

    class Meta:
        ordering = ["user", "kind", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "value"], name="contactmethod_once_per_user"),
            # An inbound SMS or a Slack click names its sender by number or id: one verified owner each.
            models.UniqueConstraint(
                fields=["kind", "value"],
                condition=Q(verified_at__isnull=False),
                name="contactmethod_one_verified_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_kind_display()} {self.value}"


def _sms_default() -> list[str]:
    return [Severity.CRITICAL, Severity.HIGH]


def _voice_default() -> list[str]:
    return [Severity.CRITICAL]


def _quiet_default() -> list[str]:
    return [Severity.CRITICAL]


class PagingPreference(models.Model):
    """How one person wants to be paged (no row = the defaults)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="paging_preference")
    timezone = models.CharField(max_length=64, default="UTC", help_text="Where the quiet hours are read.")
    sms_severities = models.JSONField(default=_sms_default, blank=True, help_text="Severities paged by SMS.")
    voice_severities = models.JSONField(default=_voice_default, blank=True, help_text="Severities paged by a call.")
    quiet_start = models.TimeField(null=True, blank=True, help_text="Quiet hours from this local time…")
    quiet_end = models.TimeField(null=True, blank=True, help_text="…to this one (empty = none).")
    quiet_severities = models.JSONField(
        default=_quiet_default, blank=True, help_text="Severities that still page by SMS or call in quiet hours."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"paging preference of {self.user}"


class CalendarToken(HashedToken):
    """The secret in a calendar feed's URL: a schedule's shifts, or one person's across schedules.
    Only its digest is kept; the URL is shown once."""

    schedule = models.ForeignKey(Schedule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="calendar_tokens"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(HashedToken.Meta):
        constraints = [
            models.CheckConstraint(
                condition=Q(schedule__isnull=False, user__isnull=True) | Q(schedule__isnull=True, user__isnull=False),
                name="calendartoken_schedule_xor_user",
            )
        ]

    def __str__(self) -> str:
        return f"calendar feed of {self.schedule or self.user} {self.prefix}…"
