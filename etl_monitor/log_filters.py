"""Log formatting that never lets a secret reach a log line or a logged exception.

Three kinds of credentials travel in URLs and so end up in request logs: the ping key
(``/ping/<key>/<loader>``, the whole credential of a cron job), a calendar feed's token
(``/oncall/calendar/<token>.ics``) and query values such as the Jira webhook's ``?secret=``.
``log_redact`` masks them, and everything ``scrub`` knows (passwords, tokens, credentials
in URLs, our ciphertext). Django's loggers use it through ``ScrubbingFormatter`` (or
``JsonFormatter`` with ``LOG_FORMAT=json``, one JSON object per line for log shipping);
gunicorn's access log through the logger class in ``deploy/gunicorn.conf.py``.

Every record carries the request id and correlation id of the request or task it was logged in
(``RequestContextFilter``), so one request's lines can be found across processes.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re

from etl_monitor.protection import MASK, scrub

# The segment after /ping/ is the key; the loader code and action after it stay readable.
PING_KEY_RE = re.compile(r"(/ping/)([^/\s?#\"']+)")
# A calendar feed's URL (/oncall/calendar/<token>.ics) is the whole credential of the feed.
CALENDAR_TOKEN_RE = re.compile(r"(/oncall/calendar/)([^/\s?#\"'.]+)")
# A query parameter whose name says it carries a credential: ?secret=, &token=, &key=, &api_key=…
QUERY_SECRET_RE = re.compile(
    r"(?i)([?&;][^=&;\s\"'#]*(?:secret|token|key|password|passwd|signature)[^=&;\s\"'#]*=)([^&;\s\"'#]*)"
)


def log_redact(text: str) -> str:
    """``text`` with ping keys, credential query values and anything ``scrub`` recognises masked;
    the shape of a path stays (``/ping/••••••/SALES-DAILY/fail?rid=…``), so the log stays useful."""
    text = PING_KEY_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = CALENDAR_TOKEN_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = QUERY_SECRET_RE.sub(lambda m: f"{m.group(1)}{MASK}" if m.group(2) else m.group(0), text)
    return scrub(text)


class ScrubbingFormatter(logging.Formatter):
    """Formats as usual, then removes anything shaped like a secret (passwords, tokens,
    credentials in URLs, ping keys, our ciphertext) from the whole text, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return log_redact(super().format(record))


# The request (or Celery task) being handled in this thread/context, set by RequestContextMiddleware
# and the worker's task_prerun; "-" outside any.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
CORRELATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
# What a client may send as X-Request-ID / X-Correlation-ID: anything else is replaced, so a log
# line can never be forged or broken through these headers.
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def safe_id(value: str | None) -> str | None:
    return value if value and SAFE_ID_RE.match(value) else None


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``correlation_id`` to every record (for both formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.correlation_id = CORRELATION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    correlation_id, process, and the exception's traceback if any — every string scrubbed as
    ``ScrubbingFormatter`` scrubs, before encoding, so the line stays valid JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": log_redact(record.getMessage()),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
            "correlation_id": getattr(record, "correlation_id", CORRELATION_ID.get()),
            "process": record.process,
        }
        for field in ("method", "path", "status", "duration_ms"):  # the request log's own fields
            if hasattr(record, field):
                value = getattr(record, field)
                entry[field] = log_redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = log_redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)
