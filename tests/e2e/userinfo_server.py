"""A test-controlled OpenID Connect userinfo endpoint on 127.0.0.1.

mpass-guard calls it through an Envoy cluster (``static_cluster("op", port)``)
with the session's access token; the test decides the answer and reads what
arrived:

- ``grant(token, claims)``: answer a ``Bearer <token>`` with these claims
  (``application/json``); any other token gets ``401 invalid_token``;
- ``status(503)``: answer every call with that status;
- ``slow(seconds)``: sleep before answering (beyond the filter's timeout);
- ``calls``: the ``Authorization`` values received, in order.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
USERINFO_PATH = "/idp/userinfo"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-userinfo"
    # Headers and body in one write, without Nagle: otherwise Envoy's
    # delayed ACK adds ~40 ms to every call (the bench measures calls).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        op: UserinfoServer = self.server.op  # type: ignore[attr-defined]
        auth = self.headers.get("authorization", "")
        status, body = op._answer(self.path, auth)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if status == 401:
            self.send_header("www-authenticate", 'Bearer error="invalid_token"')
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class UserinfoServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, dict[str, Any]] = {}
        self._status: int | None = None
        self._slow = 0.0
        self.calls: list[str] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._server.daemon_threads = True
        self._server.op = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{USERINFO_PATH}"

    def grant(self, token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._grants[token] = claims

    def status(self, code: int | None) -> None:
        with self._lock:
            self._status = code

    def slow(self, seconds: float) -> None:
        with self._lock:
            self._slow = seconds

    def _answer(self, path: str, auth: str) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(auth)
            slow, status = self._slow, self._status
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            claims = self._grants.get(token)
        if slow:
            time.sleep(slow)
        if path.partition("?")[0] != USERINFO_PATH:
            return 404, {"error": "not_found"}
        if status is not None:
            return status, {"error": "server_error"}
        if claims is None:
            return 401, {"error": "invalid_token"}
        return 200, claims

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
