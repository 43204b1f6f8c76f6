"""Network helpers for tests and benchmarks (no Django: spawned receiver processes import them)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, then closed again): for a server a test
    starts, or for a source that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
