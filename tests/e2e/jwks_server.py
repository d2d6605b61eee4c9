"""A test-controlled JWKS and OpenID discovery server on 127.0.0.1.

The filter fetches keys from it through an Envoy cluster (``cluster()``);
tests switch its behaviour at run time and read how often each path was asked:

- ``serve(jwks)``: answer ``/jwks`` with that key set (and the discovery
  document at ``/.well-known/openid-configuration``);
- ``down()`` / ``up()``: stop listening (connection refused) / listen again on
  the same port;
- ``slow(seconds)``: sleep before answering (beyond the filter's timeout);
- ``status(500)``, ``garbage()``, ``oversized(n)``: a broken answer;
- ``userinfo_endpoint(url)``: a ``userinfo_endpoint`` in the discovery document;
- ``discovery_issuer(iss)``: the ``issuer`` the discovery document names
  (by default the server's own base URL, which is what an issuer at
  ``http://127.0.0.1:<port>`` expects);
- ``count(path)``, ``wait_for(path, n)``: requests received per path.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
JWKS_PATH = "/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-jwks"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        ks: KeyServer = self.server.keyserver  # type: ignore[attr-defined]
        path = self.path.partition("?")[0]
        mode, arg, body = ks._arrived(path)
        if mode == "slow":
            time.sleep(arg)
        if mode == "close":
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return
        status = 200
        if mode == "status":
            status, body = arg, b'{"error":"server_error"}'
        elif mode == "garbage":
            body = b"<html>this is not json{{{"
        elif mode == "oversized":
            body = b'{"keys":[' + b" " * arg + b"]}"
        elif body is None:
            status, body = 404, b'{"error":"not_found"}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the filter gave up (timeout): that is the point of "slow"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class KeyServer:
    """One JWKS + discovery server; every switch takes effect for the next request."""

    def __init__(self, jwks: str | None = None) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._counts: collections.Counter[str] = collections.Counter()
        self._jwks = jwks
        self._mode: tuple[str, Any] = ("ok", None)
        self._issuer: str | None = None
        self._userinfo: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._port = 0
        self.up()

    # -- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def jwks_uri(self) -> str:
        return self.base_url + JWKS_PATH

    def up(self) -> "KeyServer":
        """Listens (again, on the same port once one was chosen)."""
        with self._lock:
            if self._server is not None:
                return self
            server = ThreadingHTTPServer((LOOPBACK, self._port), _Handler)
            server.daemon_threads = True
            server.keyserver = self  # type: ignore[attr-defined]
            self._port = server.server_address[1]
            self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def down(self) -> "KeyServer":
        """Stops listening: new connections are refused."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        return self

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> "KeyServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------

    def serve(self, jwks: str) -> "KeyServer":
        """Answers with this key set (and a normal discovery document)."""
        with self._lock:
            self._jwks, self._mode = jwks, ("ok", None)
        return self.up()

    def slow(self, seconds: float) -> "KeyServer":
        with self._lock:
            self._mode = ("slow", seconds)
        return self.up()

    def status(self, code: int = 500) -> "KeyServer":
        with self._lock:
            self._mode = ("status", code)
        return self.up()

    def garbage(self) -> "KeyServer":
        with self._lock:
            self._mode = ("garbage", None)
        return self.up()

    def oversized(self, size: int) -> "KeyServer":
        """A syntactically valid JSON answer of more than ``size`` bytes."""
        with self._lock:
            self._mode = ("oversized", size)
        return self.up()

    def close_connections(self) -> "KeyServer":
        """Accepts, reads the request, closes without an answer."""
        with self._lock:
            self._mode = ("close", None)
        return self.up()

    def userinfo_endpoint(self, url: str | None) -> "KeyServer":
        """The ``userinfo_endpoint`` the discovery document names (None: none)."""
        with self._lock:
            self._userinfo = url
        return self

    def discovery_issuer(self, issuer: str | None) -> "KeyServer":
        """The ``issuer`` the discovery document names (None: the server's own URL)."""
        with self._lock:
            self._issuer = issuer
        return self

    # -- observation -------------------------------------------------------

    def count(self, path: str = JWKS_PATH) -> int:
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

    # -- handler side ------------------------------------------------------

    def _arrived(self, path: str) -> tuple[str, Any, bytes | None]:
        with self._cond:
            self._counts[path] += 1
            self._cond.notify_all()
            mode, arg = self._mode
            if path == JWKS_PATH:
                body = self._jwks.encode() if self._jwks is not None else None
            elif path == DISCOVERY_PATH:
                doc = {
                    "issuer": self._issuer or self.base_url,
                    "jwks_uri": self.jwks_uri,
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
                if self._userinfo:
                    doc["userinfo_endpoint"] = self._userinfo
                body = json.dumps(doc).encode()
            else:
                body = None
        return mode, arg, body
