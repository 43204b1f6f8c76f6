"""Platform-level models: field protection (which fields some roles may not see or change),
and people's API tokens."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
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

    def __str__(self) -> str:
        return f"field key check {self.pk}"  # never the token


class HashedToken(models.Model):
    """What every token the platform issues stores: the first characters to recognise it, a
    SHA-256 digest (never the token), when it was made, last used and revoked, and by whom it
    was revoked (a revoked token stays for the record). ``ApiToken`` and ingest tokens share it."""

    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise the token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class ApiToken(HashedToken):
    """A person's API token (``Authorization: Token <key>``), issued by POST /api/v1/auth/token/.

    Like ingest tokens, only a SHA-256 digest and the first characters are stored: the key is
    shown once, to the person who logged in. A token expires (``API_TOKEN_TTL_DAYS``) and can be
    revoked by its owner or an Admin; a revoked token stays for the record. Rules live in
    ``etl_monitor.tokens``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. 'nightly report script'.")
    expires_at = models.DateTimeField()

    class Meta(HashedToken.Meta):
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.user} {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()
