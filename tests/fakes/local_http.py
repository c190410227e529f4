"""Owns the serving of a fake's HTTP API on 127.0.0.1 for the length of a ``with`` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


@contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[str]:
    """Serve ``httpd`` on a thread until the block ends; its base URL (``http://127.0.0.1:port``)."""
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
