"""Reads of the integrations app that need more than a queryset: what a person may see of what
was stored before today's rules."""

from __future__ import annotations

from typing import Any

from etl_monitor.protection import policy_for
from integrations.models import Delivery
from loaders.models import Loader, Team

# The loader fields a message carries: ``notifications.payloads.incident_context`` passes them through
# ``outbound_redact`` (the service line says the name, the owner line the owning team).
MESSAGE_LOADER_FIELDS = ("name", "owner")


def delivery_payload_visible(*, user: Any, delivery: Delivery) -> Any:
    """The delivery's payload as ``user`` may read it today.

    The payload is what was sent, rendered once under the rules of its day. A loader field that
    became HIDDEN or MASKED for ``user`` since then is masked in it (``FieldPolicy.redact_rendered``,
    the same policy every other read applies), at every value the field has had, since the
    message may be older than a rename. A role the rule exempts reads the message as it was sent.
    """
    loader_id = delivery.incident.loader_id if delivery.incident_id else None
    if loader_id is None:
        return delivery.payload
    policy = policy_for(user, Loader)
    protected = [name for name in MESSAGE_LOADER_FIELDS if name in policy.hidden | policy.masked]
    if not protected:
        return delivery.payload
    return policy.redact_rendered(delivery.payload, _loader_values_ever(loader_id, protected))


def _loader_values_ever(loader_id: int, fields: list[str]) -> dict[str, set[str]]:
    """Every value ``fields`` of the loader have had (its history rows include the current one;
    the owner as the names its teams have had)."""
    rows = [
        *Loader.history.filter(id=loader_id).values_list("name", "owner_id"),
        *Loader.objects.filter(pk=loader_id).values_list("name", "owner_id"),
    ]
    values: dict[str, set[str]] = {}
    if "name" in fields:
        values["name"] = {name for name, _owner in rows}
    if "owner" in fields:
        teams = {owner for _name, owner in rows if owner is not None}
        values["owner"] = {
            *Team.objects.filter(pk__in=teams).values_list("name", flat=True),
            *Team.history.filter(id__in=teams).values_list("name", flat=True),
        }
    return values
