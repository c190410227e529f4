"""Owns a blackhole on loopback: a TCP port whose connections complete (from the kernel's
backlog) and never get an answer, as a provider host that never answers looks to a client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def blackhole() -> Iterator[int]:
    """The port, listening and never accepting, for the length of the block."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
