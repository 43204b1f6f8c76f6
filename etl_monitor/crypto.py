"""Encryption at rest for secret fields (Fernet / MultiFernet).

``FIELD_ENCRYPTION_KEY`` lists keys newest first: the first encrypts, all decrypt,
so a key is rotated by prepending a new one and running ``manage.py rotate_field_keys``.
In DEBUG without a key, one is derived from SECRET_KEY so a fresh machine works;
production refuses to start without a key, with a key that is not a Fernet key, or with
keys that do not decrypt the database's key check (``etl_monitor.checks``).

A stored secret that no configured key decrypts does not break the page or list that reads
it: the field reads as ``UndecryptableSecret`` ("set, but unreadable"), which is logged once
per row, kept as stored when the row is saved, and refuses to be used as text.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "fernet:"  # noqa: S105 - a format marker, not a secret

# The known text of the key check row (etl_monitor.models.FieldKeyCheck; its migration keeps a copy).
KEY_CHECK_PLAINTEXT = "etl-monitor field key check"

UNDECRYPTABLE = "secret cannot be decrypted — set it again"

KEY_GENERATE_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


def field_keys_malformed(keys: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """One message per configured key that is not a Fernet key (never quoting the key itself)."""
    keys = list(settings.FIELD_ENCRYPTION_KEY if keys is None else keys)
    problems = []
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:  # exactly what Fernet refuses (binascii.Error is a ValueError)
            position = f"key {number} of {len(keys)}" if len(keys) > 1 else "the key"
            problems.append(
                f"FIELD_ENCRYPTION_KEY: {position} is not a Fernet key (32 bytes in URL-safe base64, "
                f"44 characters ending in '='; generate one with: {KEY_GENERATE_HINT})."
            )
    return problems


@lru_cache(maxsize=1)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(f"field-key:{secret_key}".encode()).digest())
        keys = (derived.decode(),)
    if problems := field_keys_malformed(keys):
        raise ImproperlyConfigured(" ".join(problems))
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    if not settings.FIELD_ENCRYPTION_KEY and not settings.FIELD_KEY_DERIVED_ALLOWED:
        # Never encrypt or decrypt real secrets with a key derived from a development default.
        raise ImproperlyConfigured(settings.FIELD_KEY_MISSING)
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEY), settings.SECRET_KEY)


def secret_encrypt(plaintext: str) -> str:
    return TOKEN_PREFIX + fernet().encrypt(plaintext.encode()).decode()


def secret_decrypt(stored: str) -> str:
    if not stored.startswith(TOKEN_PREFIX):
        raise ValueError("Stored secret is not an encrypted token.")
    try:
        return fernet().decrypt(stored[len(TOKEN_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        # Never include the token or any key material in the message.
        raise ValueError("Stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY.") from exc


def secret_encrypt_bytes(data: bytes) -> bytes:
    """Encrypt a stored file (an uploaded spreadsheet may hold secrets)."""
    return fernet().encrypt(data)


def secret_decrypt_bytes(token: bytes) -> bytes:
    try:
        return fernet().decrypt(token)
    except InvalidToken as exc:
        raise ValueError("Stored file cannot be decrypted with the configured FIELD_ENCRYPTION_KEY.") from exc


class CannotDecrypt(ValueError):  # its name is no "secret…": scrub() would mask the reason after it
    """An undecryptable secret was used as text (to authenticate, sign, compare a prefix…).

    Code that can say so better checks ``secret_undecryptable`` first (the outbox gives up on the
    delivery, routing skips the channel); anything else fails with this message instead of sending
    a wrong credential. Templates render nothing for it instead of failing the page."""

    silent_variable_failure = True

    def __init__(self) -> None:
        super().__init__(UNDECRYPTABLE)


class UndecryptableSecret:
    """What an encrypted field reads as when no configured key decrypts its stored token.

    It is truthy (a secret is set; only its value is lost), equal only to itself, never shows the
    token, and raises ``CannotDecrypt`` when used as text. Saved back, it writes the stored
    token unchanged, so listing the right key again makes it readable again."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UndecryptableSecret) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __repr__(self) -> str:
        return "<undecryptable secret>"

    def __str__(self) -> str:
        raise CannotDecrypt

    def __format__(self, spec: str) -> str:
        raise CannotDecrypt

    def __getattr__(self, name: str) -> Any:
        # str's methods (startswith, encode…) fail clearly; other probes (hasattr by Django, copy…)
        # find nothing, as on any object.
        if name.startswith("_") or not hasattr(str, name):
            raise AttributeError(name)
        raise CannotDecrypt


def secret_undecryptable(value: object) -> bool:
    """True when a secret field's value could not be decrypted with the configured keys."""
    return isinstance(value, UndecryptableSecret)


def secret_status(value: object) -> str:
    """What a screen may say about a secret: whether it is set, never its value."""
    if secret_undecryptable(value):
        return UNDECRYPTABLE
    return "set (hidden)" if value else "not set"


_reported: set[tuple[str, Any, str, int]] = set()


class _SecretAttribute(DeferredAttribute):
    """Reading an undecryptable secret logs it once per stored value (with the row id, never the token).

    A data descriptor (it has ``__set__``), so reads of a loaded value come through ``__get__`` too."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: models.Model | None, cls: type | None = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, UndecryptableSecret):
            where = (instance._meta.label, instance.pk, self.field.name)
            if (*where, hash(value)) not in _reported:
                if len(_reported) < 10_000:  # bounded: a whole table under a wrong key logs enough
                    _reported.add((*where, hash(value)))
                logger.warning(
                    "%s %s: %s cannot be decrypted with FIELD_ENCRYPTION_KEY (%s, or list the key it was written "
                    "with after the current one).",
                    *where,
                    UNDECRYPTABLE,
                )
        return value


class EncryptedTextField(models.TextField):
    """A text column that only ever holds ciphertext; Python code sees plaintext.

    The empty string stays empty (it means "no secret set") so forms and
    queries can tell "set" from "not set" without decrypting. A token that
    does not decrypt reads as ``UndecryptableSecret`` (see the module docstring).
    """

    descriptor_class = _SecretAttribute

    def from_db_value(self, value: str | None, expression: object, connection: object) -> str | None:
        if value is None or value == "":
            return value
        try:
            return secret_decrypt(value)
        except ValueError:
            return UndecryptableSecret(value)  # type: ignore[return-value]

    def to_python(self, value: Any) -> Any:
        if isinstance(value, UndecryptableSecret):
            return value
        return super().to_python(value)

    def get_prep_value(self, value: object) -> object:
        if isinstance(value, UndecryptableSecret):
            return value.token  # kept exactly as stored
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return secret_encrypt(str(value))

    def deconstruct(self) -> tuple:
        name, _path, args, kwargs = super().deconstruct()
        return name, "etl_monitor.crypto.EncryptedTextField", args, kwargs
