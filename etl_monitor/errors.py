"""Errors raised by services; every entry point (admin, API, import, config) maps them the same way.

Messages are written for the person who caused them and never contain secret values.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A business rule refused the operation."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermissionRefused(ServiceError):
    """The user may not do this (role or four-eyes). HTTP 403."""

    code = "permission_denied"


class StateConflict(ServiceError):
    """The object is not in a state that allows this. HTTP 409."""

    code = "conflict"


class InvalidInput(ServiceError):
    """Input failed validation; ``errors`` maps field name to messages. HTTP 400."""

    code = "invalid"

    def __init__(self, errors: dict[str, list[str]], message: str = "Invalid input.") -> None:
        super().__init__(message)
        self.errors = errors

    def __str__(self) -> str:
        parts = [f"{field}: {'; '.join(msgs)}" for field, msgs in self.errors.items()]
        return "; ".join(parts) or self.message


def fields_known(data: dict[str, object], allowed: tuple[str, ...] | set[str]) -> None:
    """Refuse fields a service does not take, each named (``{"colour": ["Unknown field."]}``)."""
    unknown = sorted(str(name) for name in set(data) - set(allowed))
    if unknown:
        raise InvalidInput({name: ["Unknown field."] for name in unknown})


def model_validate(instance: object, errors: dict[str, list[str]], exclude: tuple[str, ...] = ()) -> None:
    """The model's own validation (``full_clean``) added to the service's ``errors`` — fields
    already in error, and ``exclude``, are not checked again — then InvalidInput with all of them."""
    from django.core.exceptions import ValidationError

    try:
        instance.full_clean(exclude=[*errors, *exclude])  # type: ignore[attr-defined]
    except ValidationError as exc:
        for field_name, messages in exc.message_dict.items():
            errors.setdefault(field_name, []).extend(messages)
    if errors:
        raise InvalidInput(errors)
