"""Log formatting that never lets a secret reach a log line or a logged exception.

Two kinds of credentials travel in URLs and so end up in request logs: the ping key
(``/ping/<key>/<loader>``, the whole credential of a cron job) and query values such as
the Jira webhook's ``?secret=``. ``log_redact`` masks both, and everything ``scrub``
knows (passwords, tokens, credentials in URLs, our ciphertext). Django's loggers use it
through ``ScrubbingFormatter``; gunicorn's access log through the logger class in
``deploy/gunicorn.conf.py``.
"""

from __future__ import annotations

import logging
import re

from etl_monitor.protection import MASK, scrub

# The segment after /ping/ is the key; the loader code and action after it stay readable.
PING_KEY_RE = re.compile(r"(/ping/)([^/\s?#\"']+)")
# A query parameter whose name says it carries a credential: ?secret=, &token=, &key=, &api_key=…
QUERY_SECRET_RE = re.compile(
    r"(?i)([?&;][^=&;\s\"'#]*(?:secret|token|key|password|passwd|signature)[^=&;\s\"'#]*=)([^&;\s\"'#]*)"
)


def log_redact(text: str) -> str:
    """``text`` with ping keys, credential query values and anything ``scrub`` recognises masked;
    the shape of a path stays (``/ping/••••••/SALES-DAILY/fail?rid=…``), so the log stays useful."""
    text = PING_KEY_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = QUERY_SECRET_RE.sub(lambda m: f"{m.group(1)}{MASK}" if m.group(2) else m.group(0), text)
    return scrub(text)


class ScrubbingFormatter(logging.Formatter):
    """Formats as usual, then removes anything shaped like a secret (passwords, tokens,
    credentials in URLs, ping keys, our ciphertext) from the whole text, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return log_redact(super().format(record))
