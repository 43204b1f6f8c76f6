"""The one local SMTP server of the tests, the end-to-end suite and the benchmarks (aiosmtpd on
127.0.0.1), so the email transport runs its real client against a real server.

It keeps every message it accepts (parsed with the ``email`` package's modern policy when first
read: that parser costs ~3 ms a message, which would slow a benchmark's receiving) and when each
Message-ID first arrived; it can refuse a recipient (550) and be down (stopped, so
connections are refused) and come back on the same port. Start it with ``start()``/``stop()``
or as a context manager.
"""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller

from tests.net import free_port


class Mailbox:
    """An SMTP server keeping what it accepts; ``port`` 0 takes a free one."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.received: dict[str, float] = {}  # Message-ID → when it first arrived (time.time())
        self.refused: set[str] = set()  # recipients answered with 550
        self._controller: Controller | None = None
        self._accepted: list[bytes] = []
        self._parsed: list[EmailMessage] = []

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Nothing listens on the port any more (connections are refused)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Mailbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def count(self) -> int:
        """How many messages were accepted (without parsing them)."""
        return len(self._accepted)

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted message, in order of arrival."""
        for raw in self._accepted[len(self._parsed) :]:
            self._parsed.append(email.message_from_bytes(raw, policy=email.policy.default))
        return self._parsed

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if address in message["To"]]

    # aiosmtpd handler hooks
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()
        message_id = BytesHeaderParser().parsebytes(envelope.content)["Message-ID"]  # the headers only: cheap
        self.received.setdefault(message_id, arrived)
        self._accepted.append(envelope.content)
        return "250 Message accepted for delivery"
