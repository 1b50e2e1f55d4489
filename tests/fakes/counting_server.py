"""A raw loopback HTTP server that counts requests and answers 503, or never answers.

For clients' failure paths: no retry on a 5xx, one deadline for a server that hangs.
"""

from __future__ import annotations

import socket
import threading


class CountingServer:
    """A loopback HTTP server that counts requests and answers 503, or never answers."""

    def __init__(self, *, hang: bool) -> None:
        self.hang = hang
        self.requests = 0
        self.heads: list[bytes] = []
        """Each request's head (request line and headers), lower-cased."""
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            self.heads.append(data.split(b"\r\n\r\n")[0].lower())
            if not self.hang:
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                conn.close()
        except OSError:
            return

    def close(self) -> None:
        self._sock.close()
        for conn in self._open:
            conn.close()
