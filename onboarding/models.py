"""What the checklist keeps: the first time each step was seen done and a skip (installation-wide),
the first loader page each person opened, and who hid the checklist.

Whether a step is done is never stored here: it is read from live state on every render
(``onboarding.selectors``). These rows only say *when* it first was, so completion can be measured.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords


class Step(models.TextChoices):
    TEAM = "team", "Create a team"
    LOADER = "loader", "Create a first loader and have a second person approve it"
    TOKEN = "token", "Give the loader an ingest token or a ping key"
    FIRST_RUN = "first_run", "Receive a first run or signal"
    CHANNEL = "channel", "Configure and test a notification channel"
    PROTECTION = "protection", "Review field protection"
    DASHBOARDS = "dashboards", "Set up the dashboards"


# The one step that may be skipped: a site with nothing to hide has nothing to set up there.
SKIPPABLE = (Step.PROTECTION,)


class StepRecord(models.Model):
    """One step of the checklist for the whole installation."""

    step = models.CharField(max_length=20, choices=Step.choices, unique=True)
    first_done_at = models.DateTimeField(
        null=True, blank=True, help_text="The first time the checklist or a metrics scrape found the step done."
    )
    skipped_at = models.DateTimeField(null=True, blank=True)
    skipped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = HistoricalRecords()  # who skipped and who undid it, in order

    class Meta:
        ordering = ["id"]
        verbose_name = "onboarding step"
        permissions = [("skip_step", "Can skip an onboarding step, or undo the skip")]

    def __str__(self) -> str:
        return self.get_step_display()


class LoaderPageVisit(models.Model):
    """The first loader page (/admin/ops/loaders/<code>/) a person opened: "the dashboards are
    in use" for the checklist's last step. One row per person, written once."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    loader_code = models.CharField(max_length=100)
    visited_at = models.DateTimeField()

    class Meta:
        verbose_name = "first loader page visit"

    def __str__(self) -> str:
        return f"{self.user} opened {self.loader_code}"


class ChecklistDismissal(models.Model):
    """A person hid the checklist ("Hide this checklist"); deleting the row brings it back."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    dismissed_at = models.DateTimeField()

    class Meta:
        verbose_name = "hidden checklist"

    def __str__(self) -> str:
        return f"{self.user} hid the checklist"
