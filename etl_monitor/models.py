"""Platform-level models: field protection (which fields some roles may not see or change)."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from etl_monitor.crypto import EncryptedTextField


class ProtectionLevel(models.TextChoices):
    HIDDEN = "HIDDEN", "Hidden — not shown at all"
    MASKED = "MASKED", "Masked — shown as ••••••, can only be replaced"
    LOCKED = "LOCKED", "Locked — visible, not editable"


class FieldProtection(models.Model):
    """One protected field of one model, and the roles exempt from it.

    Enforced by ``etl_monitor.protection`` on every path a value can leave or
    enter the system. Secret fields (encrypted at rest) are always masked for
    everyone: their row exists so admins see the rule, and it cannot be weakened.
    """

    model_label = models.CharField(
        "model", max_length=100, help_text="The model the field belongs to, e.g. loaders.loaderversion."
    )
    field_name = models.CharField("field", max_length=100)
    level = models.CharField(max_length=10, choices=ProtectionLevel.choices)
    exempt_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        verbose_name="exempt roles",
        help_text="Members of these roles see and edit the field normally. Ignored for secrets.",
    )
    note = models.CharField(max_length=300, blank=True, help_text="Why this field is protected.")
    is_builtin = models.BooleanField(
        "built in", default=False, editable=False, help_text="A default rule for secrets; it cannot be weakened."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["model_label", "field_name"]
        verbose_name = "field protection"
        constraints = [
            models.UniqueConstraint(fields=["model_label", "field_name"], name="fieldprotection_unique_field"),
        ]

    def __str__(self) -> str:
        return f"{self.model_label}.{self.field_name}: {self.level}"

    def clean(self) -> None:
        from etl_monitor.protection import protectable_fields, secret_fields

        fields = protectable_fields(self.model_label)
        if fields is None:
            raise ValidationError({"model_label": f"{self.model_label!r} does not support field protection."})
        if self.field_name not in fields:
            raise ValidationError(
                {
                    "field_name": f"{self.model_label} has no protectable field {self.field_name!r} "
                    f"(choose from: {', '.join(fields)})."
                }
            )
        if self.field_name in secret_fields(self.model_label) and self.level == ProtectionLevel.LOCKED:
            raise ValidationError({"level": "A secret is always masked (or hidden); it cannot be merely locked."})


class FieldKeyCheck(models.Model):
    """A known value encrypted with the FIELD_ENCRYPTION_KEY in use when the database was set up.

    Web, worker and beat decrypt it before they start (``etl_monitor.checks``): a wrong key, or an
    old key dropped from the list before ``rotate_field_keys`` ran, stops them with a clear message
    instead of every secret failing later. One row, re-encrypted by ``rotate_field_keys`` like any secret.
    """

    token = EncryptedTextField(help_text="A known text, encrypted; it proves the configured keys read this database.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "field key check"
