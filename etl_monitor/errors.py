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
