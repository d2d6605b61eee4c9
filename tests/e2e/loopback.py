"""The life cycle shared by the test-controlled servers on 127.0.0.1.

A subclass names its request handler (``handler``); the handler reaches the
server object as ``self.server.owner``. ``up``/``down`` start and stop
listening on the same port, ``count``/``wait_for`` read how often each path
was asked (the subclass calls ``_hit(path)`` under ``self._cond``).
"""

from __future__ import annotations

import collections
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


class LoopbackServer:
    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._counts: collections.Counter[str] = collections.Counter()
        self._server: ThreadingHTTPServer | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def up(self) -> Any:
        """Listens (again, on the same port once one was chosen)."""
        with self._lock:
            if self._server is not None:
                return self
            server = ThreadingHTTPServer((LOOPBACK, self._port), self.handler)
            server.daemon_threads = True
            server.owner = self  # type: ignore[attr-defined]
            self._port = server.server_address[1]
            self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def down(self) -> Any:
        """Stops listening: new connections are refused."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        return self

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def count(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def wait_for(self, path: str, n: int, timeout: float = 10.0) -> int:
        """Waits until ``path`` was asked at least ``n`` times; returns the count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._counts[path] < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{path} asked {self._counts[path]} times, expected {n}")
                self._cond.wait(left)
            return self._counts[path]

    def _hit(self, path: str) -> None:
        """Counts one request; call with ``self._cond`` held."""
        self._counts[path] += 1
        self._cond.notify_all()
