"""The writes of the sources wing: data sources and statistics capture definitions.

The admin, the API and ``apply_config`` all create and change them through these services, so the
role check (Admin only: the server fetches a source's URL, a capture's query runs on the server),
the field check and the history hold on every path.
"""

from __future__ import annotations

from typing import Any

from etl_monitor.errors import InvalidInput, fields_known, model_validate
from etl_monitor.permissions import permission_require
from integrations.models import Capture, DataSource, SourceAuth, SourceKind
from loaders.models import Loader

SOURCE_FIELDS = ("name", "kind", "url", "auth", "username", "verify_tls", "timeout_seconds", "enabled")


def auth_problems(kind: str, auth: str, username: str, secret: str, *, from_file: bool = False) -> dict[str, list[str]]:
    """What a source's authentication lacks, by field (the admin form and configuration as code
    both ask; a file cannot carry the missing secret, so there it is reported on ``auth``)."""
    errors: dict[str, list[str]] = {}
    if auth == SourceAuth.BASIC and not username:
        errors["username"] = ["Basic authentication needs a username."]
    if auth not in (None, "", SourceAuth.NONE) and not secret:
        if from_file:
            errors["auth"] = ["This authentication needs a secret: set it in the admin (files may not carry secrets)."]
        else:
            errors["secret"] = ["This authentication needs a secret: enter it."]
    if auth == SourceAuth.API_KEY and kind == SourceKind.PROMETHEUS:
        errors.setdefault("auth", []).append("Prometheus takes basic or bearer authentication, not an API key.")
    return errors


def data_source_save(
    *,
    user: Any,
    data: dict[str, Any],
    source: DataSource | None = None,
    secret: str | None = None,
    secret_clear: bool = False,
) -> DataSource:
    """Create or change a data source. Only roles holding the data-source permissions (Admin) may:
    the server fetches the URL. ``secret``: a new password, token or API key ("" keeps the stored
    one); ``None`` for callers that may not carry secrets (configuration files), whose missing
    secret is then reported on ``auth``. ``secret_clear``: remove the stored secret — refused
    while ``auth`` still needs one (set it to NONE in the same change); the history records that
    it was cleared, never a value."""
    perm = "integrations.change_datasource" if source and source.pk else "integrations.add_datasource"
    permission_require(user, perm, "manage data sources")
    fields_known(data, SOURCE_FIELDS)
    if secret_clear and secret:
        raise InvalidInput({"secret": ["Either give a new secret or clear the stored one, not both."]})
    source = source or DataSource()
    for name, value in data.items():
        setattr(source, name, value)
    if secret_clear:
        source.secret = ""
    elif secret:
        source.secret = secret
    errors = auth_problems(
        source.kind, source.auth, source.username, source.secret, from_file=secret is None and not secret_clear
    )
    if secret_clear and "secret" in errors:
        errors["secret"] = [
            f"{source.get_auth_display()} authentication needs a secret: to clear it, set auth to NONE in the "
            "same change."
        ]
    model_validate(source, errors, exclude=("secret",))
    source._history_user = user
    source._change_reason = "secret cleared" if secret_clear else None
    source.save()
    return source


CAPTURE_FIELDS = (
    "name",
    "description",
    "loader",
    "source",
    "source_kind",
    "query",
    "index",
    "time_field",
    "key_label",
    "key_prefix",
    "metric_type",
    "enabled",
)


def capture_save(*, user: Any, data: dict[str, Any], capture: Capture | None = None) -> Capture:
    """Create or change a capture definition (configuration as code; ``loader`` is a loader code).
    Only roles holding the capture permissions (Admin) may: the query runs on the server."""
    perm = "integrations.change_capture" if capture and capture.pk else "integrations.add_capture"
    permission_require(user, perm, "manage statistics captures")
    fields_known(data, CAPTURE_FIELDS)
    capture = capture or Capture()
    errors: dict[str, list[str]] = {}
    for name, value in data.items():
        if name == "loader":
            loader = Loader.objects.filter(loader_code=value).first() if isinstance(value, str) else None
            if loader is None:
                errors["loader"] = [f"No loader with the code {value!r}."]
            else:
                capture.loader = loader
        else:
            setattr(capture, name, value)
    model_validate(capture, errors)
    capture._history_user = user
    capture.save()
    return capture
