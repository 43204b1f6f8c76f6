"""Platform-wide Prometheus metrics (HTTP requests answered and made); domain metrics live with their app."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "django_http_requests", "HTTP requests answered, by method, view and status.", ["method", "view", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "django_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and view.",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# --- ETL Monitor's own calls to other services ------------------------------------------------
# One histogram for every call ETL Monitor makes (a notification sent, a source queried): the
# service map's edges "etl-monitor → jira/slack/…" and their latency. Labels come from code only
# (``TargetService``, ``Outcome``): never a URL, host, channel or source name, which admins type.

SERVICE = "etl-monitor"


class TargetService(StrEnum):
    """Whom ETL Monitor calls: a fixed vocabulary, one value per kind of receiver (not per channel)."""

    JIRA = "jira"
    SLACK = "slack"  # the bot (Web API) and incoming webhooks alike
    SMTP = "smtp"
    WEBHOOK = "webhook"
    TWILIO = "twilio"  # SMS and calls
    SMS_GATEWAY = "sms_gateway"  # the fallback SMS provider
    ELASTICSEARCH = "elasticsearch"
    PROMETHEUS = "prometheus"


class Outcome(StrEnum):
    """How a call ended: the receiver's answer by HTTP status class, or ``error``: no usable
    answer (refused, reset, timed out, not what the API documents)."""

    SUCCESS = "success"
    CLIENT_ERROR = "client_error"  # 4xx, or a 200 that says no (Slack's {"ok": false})
    SERVER_ERROR = "server_error"  # 5xx
    ERROR = "error"


HTTP_CLIENT_REQUEST_SECONDS = Histogram(
    "http_client_request_duration_seconds",
    "ETL Monitor's calls to other services (a notification sent, a data source queried), by target and outcome.",
    ["service", "target_service", "outcome"],
    # Seconds-scale calls: the top buckets reach the clients' timeouts (NOTIFY_HTTP_TIMEOUT 10 s,
    # JIRA_TIMEOUT, a source's timeout), so a call that timed out still lands in a finite bucket.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)


def outcome_of_status(status: int) -> Outcome:
    """The outcome of an HTTP answer with this status (2xx/3xx success: redirects are not followed)."""
    if status >= 500:
        return Outcome.SERVER_ERROR
    if status >= 400:
        return Outcome.CLIENT_ERROR
    return Outcome.SUCCESS


def _status_in(exc: BaseException) -> int | None:
    """The HTTP status a client library's exception carries, on itself or its response (requests'
    HTTPError, jira's JIRAError, slack-sdk's SlackApiError, elasticsearch's ApiError), or None."""
    for holder in (exc, getattr(exc, "response", None), getattr(exc, "meta", None)):
        for name in ("status_code", "status"):
            status = getattr(holder, name, None)
            if isinstance(status, int) and not isinstance(status, bool) and status > 0:
                return status
    return None


def outcome_of_exception(exc: BaseException) -> Outcome:
    """The outcome of a call that raised ``exc``: by the HTTP status found on it or the exceptions
    it was raised from (a transport's ``Transient(...) from SlackApiError``); a status that means
    success on an exception is the receiver saying no in its body (Slack's 200 with ``ok: false``).
    No status anywhere: the call got no answer — ``error``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (status := _status_in(current)) is not None:
            outcome = outcome_of_status(status)
            return Outcome.CLIENT_ERROR if outcome == Outcome.SUCCESS else outcome
        current = current.__cause__
    return Outcome.ERROR


@dataclass
class ClientCall:
    """What the code knows about a call in progress: the status of the answer when the client hands
    it back instead of raising (``requests``, Slack's WebhookClient); or the outcome itself."""

    status: int | None = None
    outcome: Outcome | None = None


@contextmanager
def http_client_call(
    target: TargetService, *, classify: Callable[[BaseException], Outcome | None] | None = None
) -> Iterator[ClientCall]:
    """Measure one call to ``target``: its duration and outcome, observed once when the block ends.

    The outcome is, in this order: what the block set (``call.outcome``), the status it saw
    (``call.status``), ``classify(exc)`` for a protocol whose errors are not HTTP (SMTP), the
    status carried by the exception the block raised, else ``success`` (no exception) or
    ``error``. Exceptions go on unchanged."""
    target = TargetService(target)  # a value outside the vocabulary fails here, not in a dashboard
    call = ClientCall()
    started = time.perf_counter()
    outcome = Outcome.ERROR
    try:
        yield call
    except BaseException as exc:
        outcome = (
            call.outcome
            or (outcome_of_status(call.status) if call.status is not None else None)
            or (classify(exc) if classify is not None else None)
            or outcome_of_exception(exc)
        )
        raise
    else:
        outcome = call.outcome or (outcome_of_status(call.status) if call.status is not None else Outcome.SUCCESS)
    finally:
        HTTP_CLIENT_REQUEST_SECONDS.labels(service=SERVICE, target_service=target, outcome=outcome).observe(
            time.perf_counter() - started
        )
