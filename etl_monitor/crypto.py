"""Encryption at rest for secret fields (Fernet / MultiFernet).

``FIELD_ENCRYPTION_KEY`` lists keys newest first: the first encrypts, all decrypt,
so a key is rotated by prepending a new one and running ``manage.py rotate_field_keys``.
In DEBUG without a key, one is derived from SECRET_KEY so a fresh machine works;
production refuses to start without a key.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

TOKEN_PREFIX = "fernet:"  # noqa: S105 - a format marker, not a secret


@lru_cache(maxsize=1)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(f"field-key:{secret_key}".encode()).digest())
        keys = (derived.decode(),)
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


class EncryptedTextField(models.TextField):
    """A text column that only ever holds ciphertext; Python code sees plaintext.

    The empty string stays empty (it means "no secret set") so forms and
    queries can tell "set" from "not set" without decrypting.
    """

    def from_db_value(self, value: str | None, expression: object, connection: object) -> str | None:
        if value is None or value == "":
            return value
        return secret_decrypt(value)

    def get_prep_value(self, value: object) -> object:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return secret_encrypt(str(value))

    def deconstruct(self) -> tuple:
        name, _path, args, kwargs = super().deconstruct()
        return name, "etl_monitor.crypto.EncryptedTextField", args, kwargs
