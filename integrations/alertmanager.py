"""Alertmanager → incidents: the inbound webhook's payload (version 4), checked whole, then applied.

Each alert is the incident of its Alertmanager fingerprint (ours: sha256 of ``alertmanager:<fingerprint>``)
and takes the one path every incident takes, ``incident_fire`` (open, fire again, reopen; silences
and the timeline apply) or ``incident_resolve_auto``.

An *occurrence* is (fingerprint, ``startsAt``). Alertmanager posts the same firing alerts again
every ``repeat_interval``, so a repeat of an occurrence whose incident is active changes nothing but
``last_seen``; a repeat of one whose incident is no longer active (someone resolved it here) is
ignored; an alert older than the incident's occurrence (a late or duplicated post) is ignored too.
A new ``startsAt`` fires the incident (again). A resolved alert resolves the active incident.

A post carries at most ALERTMANAGER_MAX_ALERTS alerts (they are applied in one transaction, and
the request must end well within the web server's timeout). Every string of an alert is read
without control characters (PostgreSQL refuses NUL), and labels and the title on one line: a
title becomes an email subject, where a line break would lose the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from etl_monitor.errors import InvalidInput
from incidents.detection import incident_fire, incident_resolve_auto, incident_stamp, incidents_open
from incidents.kinds import human_time
from incidents.models import ACTIVE_STATUSES, Incident, RuleType
from integrations.text import control_strip, one_line
from loaders.models import Loader, Severity

logger = logging.getLogger(__name__)

SUPPORTED_VERSION = "4"
SOURCE = "alertmanager"
# Labels that classify an alert rather than say what it is about: left out of its subject.
CLASSIFYING_LABELS = frozenset({"alertname", "severity", "category"})
TITLE_LABELS = 3  # identifying labels in a title made up without a summary annotation


def token_valid(authorization: str) -> bool:
    """``Authorization: Bearer <ALERTMANAGER_WEBHOOK_TOKEN>``, compared in constant time."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), settings.ALERTMANAGER_WEBHOOK_TOKEN.encode())


@dataclass(frozen=True)
class Alert:
    """One alert of a payload, checked."""

    status: str  # "firing" or "resolved"
    fingerprint: str  # Alertmanager's
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: dt.datetime
    starts_at_text: str  # as Alertmanager wrote it (kept in the incident's metrics)
    ends_at: str
    generator_url: str

    @property
    def incident_fingerprint(self) -> str:
        return hashlib.sha256(f"{SOURCE}:{self.fingerprint}".encode()).hexdigest()

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname") or "Alertmanager alert"

    def identity(self, limit: int | None = None) -> str:
        """The labels saying what the alert is about, ``name=value`` in name order."""
        pairs = [f"{k}={v}" for k, v in sorted(self.labels.items()) if k not in CLASSIFYING_LABELS]
        return ", ".join(pairs[:limit])

    def snapshot(self) -> dict[str, Any]:
        return {
            "source": SOURCE,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at_text,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


# --- reading the payload ------------------------------------------------------------------------


class TooManyAlerts(InvalidInput):
    """More alerts in one post than ALERTMANAGER_MAX_ALERTS (the webhook answers 413)."""


def payload_parse(payload: Any) -> list[Alert]:
    """The alerts of a version 4 payload; InvalidInput naming every bad field (``alerts[2].fingerprint``)."""
    if not isinstance(payload, dict):
        raise InvalidInput({"body": ["must be a JSON object (Alertmanager's webhook payload)"]})
    version = payload.get("version")
    if version != SUPPORTED_VERSION:
        received = "missing" if version is None else f"{json.dumps(version)} is not supported"
        supported = json.dumps(SUPPORTED_VERSION)
        raise InvalidInput(
            {"version": [f"{received}; this webhook accepts Alertmanager's payload version {supported}"]}
        )
    items = payload.get("alerts")
    if not isinstance(items, list):
        raise InvalidInput({"alerts": ["required: a list of alerts" if items is None else "must be a list"]})
    limit = settings.ALERTMANAGER_MAX_ALERTS
    if len(items) > limit:
        raise TooManyAlerts(
            {
                "alerts": [
                    f"{len(items)} alerts in one post; this webhook accepts at most {limit} "
                    f"(ALERTMANAGER_MAX_ALERTS): set max_alerts: {limit} in the receiver's webhook_config"
                ]
            },
            "Too many alerts; none was applied.",
        )
    if truncated := payload.get("truncatedAlerts"):
        logger.warning("Alertmanager left %s alert(s) out of a post (its max_alerts)", truncated)
    errors: dict[str, list[str]] = {}
    alerts = []
    for index, item in enumerate(items):
        alert = _alert_parse(item, f"alerts[{index}]", errors)
        if alert is not None:
            alerts.append(alert)
    if errors:
        raise InvalidInput(errors, "The payload has invalid alerts; none was applied.")
    return alerts


def _alert_parse(item: Any, where: str, errors: dict[str, list[str]]) -> Alert | None:
    if not isinstance(item, dict):
        errors[where] = ["must be an object"]
        return None
    problems: dict[str, str] = {}
    status = item.get("status")
    if status not in ("firing", "resolved"):
        problems["status"] = "required" if status is None else 'must be "firing" or "resolved"'
    fingerprint = item.get("fingerprint")
    if not isinstance(fingerprint, str) or not one_line(fingerprint):
        problems["fingerprint"] = "required"
    labels = {
        one_line(k): one_line(v) for k, v in _strings(item.get("labels"), "labels", problems, required=True).items()
    }
    annotations = {
        one_line(k): control_strip(v)
        for k, v in _strings(item.get("annotations"), "annotations", problems, required=False).items()
    }
    starts_text = item.get("startsAt")
    starts_at = _timestamp(starts_text)
    if starts_at is None:
        problems["startsAt"] = "required" if starts_text is None else "must be an RFC 3339 timestamp"
    for name in ("endsAt", "generatorURL"):
        if not isinstance(item.get(name, ""), str):
            problems[name] = "must be a string"
    for name, problem in problems.items():
        errors[f"{where}.{name}"] = [problem]
    if problems:
        return None
    return Alert(
        status=status,
        fingerprint=one_line(fingerprint),
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        starts_at_text=starts_text,
        ends_at=one_line(item.get("endsAt", "")),
        generator_url=one_line(item.get("generatorURL", "")),
    )


def _strings(value: Any, name: str, problems: dict[str, str], *, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        problems[name] = "required" if value is None else "must be an object of strings"
        return {}
    return value


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)  # Alertmanager's nanoseconds are cut to microseconds
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- what an alert becomes ----------------------------------------------------------------------


def severity_of(labels: dict[str, str]) -> str:
    """The ``severity`` label through ALERTMANAGER_SEVERITY_MAP (case-insensitive); anything else,
    and a mapping to no known severity, is ALERTMANAGER_DEFAULT_SEVERITY."""
    mapping = {str(k).strip().lower(): str(v).strip().upper() for k, v in settings.ALERTMANAGER_SEVERITY_MAP.items()}
    mapped = mapping.get(labels.get("severity", "").strip().lower(), "")
    if mapped in Severity.values:
        return mapped
    default = settings.ALERTMANAGER_DEFAULT_SEVERITY.strip().upper()
    return default if default in Severity.values else Severity.MEDIUM


def category_of(labels: dict[str, str]) -> str:
    category = labels.get("category", "").strip().upper()
    return category if category in RuleType.values else RuleType.INFRASTRUCTURE


def incident_build(alert: Alert, loader: Loader | None) -> Incident:
    """The incident a first firing of ``alert`` opens (incident_fire sets fingerprint, times, metrics).
    The title is one line: it becomes an email subject and a Slack header."""
    summary = one_line(alert.annotations.get("summary", ""))
    identity = alert.identity(TITLE_LABELS)
    title = summary or (f"{alert.alertname} ({identity})" if identity else alert.alertname)
    runbook = one_line(alert.annotations.get("runbook_url", ""))
    return Incident(
        title=title[:300],
        description=alert.annotations.get("description", "").strip() or summary or title,
        severity=severity_of(alert.labels),
        category=category_of(alert.labels),
        rule=None,
        loader=loader,
        subject=f"{alert.alertname} {alert.identity()}".strip()[:300],
        suggestion=f"Runbook: {runbook}" if runbook else "",
    )


# --- applying the alerts ------------------------------------------------------------------------


def alerts_apply(alerts: list[Alert], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Apply checked alerts in one transaction: each opens, fires again, resolves, or (a repeat)
    changes nothing. The counts per action and each alert's incident and action."""
    now = now or timezone.now()
    codes = {alert.labels["loader_code"] for alert in alerts if alert.labels.get("loader_code")}
    loaders = {loader.loader_code: loader for loader in Loader.objects.filter(loader_code__in=codes)}
    results = []
    with transaction.atomic():
        _serialize(alert.incident_fingerprint for alert in alerts)
        applied = _opens_apply(alerts, now, loaders)
        for index, alert in enumerate(alerts):
            loader = loaders.get(alert.labels.get("loader_code", ""))
            incident, action = applied[index] if index in applied else _alert_apply(alert, now, loader)
            results.append(
                {
                    "fingerprint": alert.fingerprint,
                    "status": alert.status,
                    "incident": incident.pk if incident else None,
                    "action": action,
                }
            )
    counts = dict(Counter(result["action"] for result in results))
    logger.info("Alertmanager webhook applied %d alert(s): %s", len(alerts), counts)
    return {"counts": counts, "alerts": results}


def _opens_apply(alerts: list[Alert], now: dt.datetime, loaders: dict[str, Loader]) -> dict[int, tuple[Incident, str]]:
    """Open at once the incidents of the firing alerts whose fingerprint has no incident yet (and
    appears once in the post), in chunks of INCIDENT_OPEN_CHUNK_SIZE: what ``incident_fire`` does
    for each, in a few statements per chunk. The rest (and all of a chunk whose insert met an
    incident opened meanwhile) take the one-by-one path. Each opened alert's (incident, action)
    by its index in ``alerts``."""
    size = settings.INCIDENT_OPEN_CHUNK_SIZE
    if size <= 0:
        return {}
    seen = Counter(alert.incident_fingerprint for alert in alerts)
    known = set(Incident.objects.filter(fingerprint__in=list(seen)).values_list("fingerprint", flat=True))
    fresh = [
        index
        for index, alert in enumerate(alerts)
        if alert.status != "resolved"
        and seen[alert.incident_fingerprint] == 1
        and alert.incident_fingerprint not in known
    ]
    applied: dict[int, tuple[Incident, str]] = {}
    for start in range(0, len(fresh), size):
        chunk = fresh[start : start + size]
        incidents = [
            incident_stamp(
                incident_build(alerts[i], loaders.get(alerts[i].labels.get("loader_code", ""))),
                alerts[i].incident_fingerprint,
                alerts[i].snapshot(),
                now,
            )
            for i in chunk
        ]
        actions = incidents_open(incidents, [None] * len(incidents), now)
        if actions is not None:
            applied.update(zip(chunk, zip(incidents, actions, strict=True), strict=True))
    return applied


def _serialize(fingerprints: Iterable[str]) -> None:
    """Posts about the same fingerprints apply one after the other, so two identical posts at once
    neither open two incidents nor count the occurrence twice. SQLite's IMMEDIATE transactions run
    one at a time already; PostgreSQL takes a transaction-scoped advisory lock per fingerprint
    (in a fixed order: no deadlock between posts sharing several)."""
    if connection.vendor != "postgresql":
        return
    keys = sorted({int(fingerprint[:15], 16) for fingerprint in fingerprints})
    with connection.cursor() as cursor:  # one statement, the locks taken in the array's order
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(k, n) "
            "ORDER BY n) AS ordered",
            [keys],
        )


def _starts(incident: Incident) -> dt.datetime | None:
    return _timestamp((incident.metrics or {}).get("startsAt"))


def _alert_apply(alert: Alert, now: dt.datetime, loader: Loader | None) -> tuple[Incident | None, str]:
    fingerprint = alert.incident_fingerprint
    active = Incident.objects.select_for_update().filter(fingerprint=fingerprint, status__in=ACTIVE_STATUSES).first()
    if alert.status == "resolved":
        if active is None:
            return None, "nothing open"
        started = _starts(active)
        if started is not None and alert.starts_at < started:
            return active, "earlier occurrence"
        incident_resolve_auto(
            active, now, "Resolved in Alertmanager", {"source": SOURCE, "endsAt": alert.ends_at or None}
        )
        return active, "resolved"
    latest = active or Incident.objects.filter(fingerprint=fingerprint).order_by("-pk").first()
    started = _starts(latest) if latest is not None else None
    if started is not None and alert.starts_at == started:
        if active is None:
            return latest, "already resolved"  # resolved here while Alertmanager still fires: not reopened
        Incident.objects.filter(pk=active.pk).update(last_seen=now)
        return active, "unchanged"
    if started is not None and alert.starts_at < started:
        return latest, "earlier occurrence"
    return incident_fire(
        fingerprint=fingerprint,
        snapshot=alert.snapshot(),
        value=None,
        now=now,
        build=lambda: incident_build(alert, loader),
        reason=f"{alert.alertname} fired again, starting {human_time(alert.starts_at)}",  # a reopen says which
    )
