"""Loopback HTTP servers on a thread: for fakes that another process (Prometheus, the
adapter) must reach while the test's own event loop is busy or absent."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing; ``reply`` sends one whole answer."""

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        """``body`` with ``status``; a client that has gone away is not an error here."""
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[int]:
    """``handler`` served on 127.0.0.1:``port`` (0: a free one) from a daemon thread;
    yields the port, shuts the server down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
