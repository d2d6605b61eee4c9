"""The legacy-app stack of issue 12, shared by the login tests, the bench
cell and ``make run DEMO=login``: the login OP (tests/interop/login_op.mjs),
a recording legacy app that renders what it received as HTML, and Envoy
started from the shipped ``envoy/legacy-app.yaml`` itself, with only the
ports, the OP's URLs, the client id, the SDS secret files and the Wasm path
swapped (``render``). What the tests prove is what a vendor deploys.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

import harness
from harness import Envoy, Recorded

TEMPLATE = harness.ENVOY_DIR / "legacy-app.yaml"
INTEROP = harness.REPO / "tests" / "interop"
CLIENT_ID = "legacy-app-demo"
CALLBACK = "/oauth2/callback"
SIGNOUT = "/signout"
# The contracted attributes (envoy/legacy-app.yaml), as the app receives them.
CONTRACTED = {"x-mpass-uid", "x-mpass-given-name", "x-mpass-family-name", "x-mpass-role",
              "x-mpass-school-info"}
# What each demo user of login_op.mjs should see.
USERS = {
    "learner": "a learner of Mansikkalan testi kunta: uid, names, one role, one school",
    "teacher": "a teacher of two municipalities: only the Mansikkala role and school "
               "(the Äänekoski values are filtered out)",
    "outsider": "a learner of a municipality the contract does not permit: "
                "the refusal page, the app is never reached",
}


# -------------------------------------------------------------- the legacy app


def decoded(name: str, value: str) -> Any:
    """How the app reads an x-mpass-* header (docs/contracts.md)."""
    if value.startswith("["):
        return json.loads(value)
    return urllib.parse.unquote(value)


def app_page(rec: Recorded) -> bytes:
    """The HTML the legacy app renders: the attributes it received."""
    rows = []
    for name, value in rec.headers:
        if name.lower().startswith("x-mpass-"):
            shown = decoded(name, value)
            if isinstance(shown, list):
                shown = ", ".join(str(v) for v in shown)
            rows.append(f'<tr data-name="{html.escape(name.lower())}"><th>{html.escape(name.lower())}</th>'
                        f'<td>{html.escape(str(shown))}</td></tr>')
    cookies = [k for k, _ in rec.cookies()]
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Legacy app</title></head>
<body>
<h1 id="welcome">Legacy app</h1>
<p>This app speaks no OpenID Connect: it reads what the gateway released.</p>
<table id="attributes">{''.join(rows)}</table>
<p id="cookies">Cookies received: {html.escape(', '.join(cookies) or 'none')}</p>
<p id="authorization">Authorization header: {'present' if rec.values('authorization') else 'none'}</p>
<p><a id="signout" href="{SIGNOUT}">Sign out</a></p>
</body></html>
"""
    return doc.encode()


class _AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "legacy-app"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, list(self.headers.items()), body)
        self.server.app._record(rec)  # type: ignore[attr-defined]
        page = app_page(rec)
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(page)

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class LegacyApp(harness.Upstream):
    """The recording upstream, answering with the HTML page above."""

    def __init__(self, port: int = 0) -> None:  # noqa: D107 - same fields as Upstream
        self._server = ThreadingHTTPServer((harness.LOOPBACK, port), _AppHandler)
        self._server.daemon_threads = True
        self._server.app = self  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.requests: list[Recorded] = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)


# --------------------------------------------------------------------- the OP


class LoginOP:
    """``node tests/interop/login_op.mjs`` on loopback, issuer http://localhost:PORT.

    ``localhost`` rather than 127.0.0.1 keeps the OP's own cookies apart from
    the gateway's (cookies are per host, not per port).
    """

    def __init__(self, port: int, redirect_uri: str, log: Path, *, id_token_ttl: int = 3600,
                 post_logout_uri: str = "") -> None:
        self.port = port
        self.redirect_uri = redirect_uri
        self.post_logout_uri = post_logout_uri
        self.log = log
        self.id_token_ttl = id_token_ttl
        self.client_secret = secrets.token_urlsafe(24)
        self.issuer = f"http://localhost:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LoginOP":
        node = shutil.which("node")
        if node is None:
            raise harness.Missing("node is missing: install Node.js 20+ (make setup)")
        if not (INTEROP / "node_modules" / "oidc-provider" / "package.json").is_file():
            raise harness.Missing("tests/interop/node_modules is missing: run `make setup`")
        cmd = [node, "login_op.mjs", "--port", str(self.port), "--client-id", CLIENT_ID,
               "--client-secret", self.client_secret, "--redirect-uri", self.redirect_uri,
               "--id-token-ttl", str(self.id_token_ttl)]
        if self.post_logout_uri:
            cmd += ["--post-logout-uri", self.post_logout_uri]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=INTEROP, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"login OP did not start:\n{self.log.read_text()[-2000:]}")
        assert json.loads(line)["issuer"] == self.issuer
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


# ------------------------------------------------------------------- Envoy


def _filters(doc: dict) -> list[dict]:
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return hcm["typed_config"]["http_filters"]


def _write_secret(path: Path, name: str, value: str) -> None:
    path.write_text(yaml.safe_dump({"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name, "generic_secret": {"secret": {"inline_string": value}}}]}))


def render(*, listener: int, admin: int, app_port: int, op: LoginOP, workdir: Path,
           issuer_changes: dict | None = None) -> dict:
    """envoy/legacy-app.yaml with the local ports, OP, client and fresh secrets."""
    doc = yaml.safe_load(TEMPLATE.read_text())
    doc["admin"]["address"]["socket_address"]["port_value"] = admin
    doc["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = listener
    filters = _filters(doc)
    oauth2 = filters[0]["typed_config"]["config"]
    oauth2["token_endpoint"]["uri"] = f"{op.issuer}/token"
    oauth2["authorization_endpoint"] = f"{op.issuer}/auth"
    oauth2["end_session_endpoint"] = f"{op.issuer}/session/end"
    creds = oauth2["credentials"]
    creds["client_id"] = CLIENT_ID
    secrets_dir = workdir / "legacy-app-secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    for key, name, value in (("token_secret", "mpassid-client-secret", op.client_secret),
                             ("hmac_secret", "oauth2-hmac", secrets.token_urlsafe(32))):
        assert creds[key]["name"] == name
        path = secrets_dir / f"{key.replace('_', '-')}.yaml"
        _write_secret(path, name, value)
        creds[key]["sds_config"]["path_config_source"] = {
            "path": str(path), "watched_directory": {"path": str(secrets_dir)}}
    wasm = filters[1]["typed_config"]["config"]
    wasm["vm_config"]["code"]["local"]["filename"] = str(harness.require_wasm())
    plugin = json.loads(wasm["configuration"]["value"])
    plugin["issuers"][0]["issuer"] = op.issuer
    plugin["issuers"][0]["key_fetch"] = {"initial_wait": "3s"}
    plugin["providers"]["legacy-app"]["audiences"] = [CLIENT_ID]
    plugin["issuers"][0].update(issuer_changes or {})
    wasm["configuration"]["value"] = json.dumps(plugin)
    clusters = doc["static_resources"]["clusters"]
    for c in clusters:
        if c["name"] == "app":
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
                "socket_address"]["port_value"] = app_port
    # The local OP speaks plain HTTP on loopback: the same cluster name, no TLS.
    clusters[:] = [c for c in clusters if c["name"] != "mpassid"]
    clusters.append(harness.static_cluster("mpassid", op.port, connect_timeout="2s"))
    return doc


class LegacyStack:
    """The OP, the app and Envoy (the shipped legacy-app.yaml) on loopback."""

    def __init__(self, workdir: Path, *, id_token_ttl: int = 3600, listener: int = 0,
                 admin: int = 0, op_port: int = 0, app_port: int = 0,
                 concurrency: int = 1, issuer_changes: dict | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.issuer_changes = issuer_changes
        self.app = LegacyApp(app_port)
        self.envoy = Envoy(0, None, workdir=workdir / "envoy", concurrency=concurrency,
                           config={})
        if listener:
            self.envoy.port = listener
        if admin:
            self.envoy.admin_port = admin
        self.base = f"http://127.0.0.1:{self.envoy.port}"
        self.op = LoginOP(op_port or harness._ephemeral_port(), self.base + CALLBACK,
                          workdir / "login-op.log", id_token_ttl=id_token_ttl,
                          post_logout_uri=self.base + "/")

    def start(self) -> "LegacyStack":
        self.app.start()
        self.op.start()
        self.envoy._config = render(listener=self.envoy.port, admin=self.envoy.admin_port,
                                    app_port=self.app.port, op=self.op, workdir=self.workdir,
                                    issuer_changes=self.issuer_changes)
        self.envoy.plugin_config = {}  # the harness then requires the Wasm module
        self.envoy.start()
        self.wait_for_discovery()
        return self

    def wait_for_discovery(self, timeout: float = 15.0) -> None:
        """Until every VM (main thread and each worker) holds the OP's keys
        through discovery: a login finished by a script within milliseconds
        of the start must not race it (a person never does)."""
        try:
            self.envoy.wait_key_sets(self.op.issuer, timeout)
        except RuntimeError as e:
            raise RuntimeError(f"discovery did not finish: {e}") from None

    def stop(self) -> None:
        self.envoy.stop()
        self.op.stop()
        self.app.stop()

    def __enter__(self) -> "LegacyStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
