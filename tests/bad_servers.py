"""TCP servers that misbehave the way a sick Redis does, for tests of what a client does then (no tests here).

``BadServer(hang=True)`` accepts connections and never answers (commands hang until their timeout);
``BadServer(hang=False)`` reads what the client sends, then closes (every command fails mid-flight).
``accepted`` counts connection attempts.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BadServer:
    def __init__(self, *, hang: bool) -> None:
        self.hang = hang
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.hang:
                self.conns.append(conn)
                continue
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
