"""A real TCP proxy in front of the real PostgreSQL server, to lose replies or the server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class ReplyCutter:
    """127.0.0.1:port → the PostgreSQL server; when armed, the reply to the next COMMIT of
    a trial's state change is lost (reads commit too, and are safe to redo)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._closing = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, server]
            mute = threading.Event()  # set: the server's replies on this connection are lost
            for args in ((client, server, mute, True), (server, client, mute, False)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, mute: threading.Event, upstream: bool
    ) -> None:
        changed = False  # this connection has sent a trial state change not yet committed
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not upstream:
                    if not mute.is_set():
                        dst.sendall(data)
                    continue
                changed = changed or b"UPDATE trials SET state" in data
                if changed and b"COMMIT" in data and self.armed.is_set():
                    self.armed.clear()
                    mute.set()
                    dst.sendall(data)
                    time.sleep(0.3)  # the server commits; its reply is never relayed
                    self.cuts += 1
                    for sock in (src, dst):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                dst.sendall(data)

    def sever(self) -> None:
        """The database is gone: every connection is cut and new ones are refused."""
        self.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
