"""Log formatting that never lets a secret reach a log line or a logged exception."""

from __future__ import annotations

import logging

from etl_monitor.protection import scrub


class ScrubbingFormatter(logging.Formatter):
    """Formats as usual, then removes anything shaped like a secret (passwords,
    tokens, credentials in URLs, our ciphertext) from the whole text, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
