"""Interop with a real, independent OpenID Provider: the certified
``oidc-provider`` package (pinned in tests/interop/package.json), on loopback.

A real ID token is obtained through the provider's normal authorization-code
flow (its stock login and consent forms, submitted over HTTP), and mpass-guard
is configured with nothing but the issuer URL (``discovery``) and the client id
as the provider's audience. Then the provider rotates its signing key (it is
restarted with a fresh key at the same issuer URL) and a token signed with the
new key is accepted through the unknown-kid refetch, without restarting Envoy.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import harness
from harness import Envoy, static_cluster, with_payload

INTEROP = harness.REPO / "tests" / "interop"
CLIENT_ID = "mpass-guard-interop"
CLIENT_SECRET = secrets.token_urlsafe(24)
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read from Location
PROTECTED = "/shop/basket"


def ensure_node_modules() -> None:
    """``npm ci`` once (``make setup`` does it too); a missing Node is a failure."""
    if (INTEROP / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise harness.Missing("npm is missing: install Node.js 20+ (make setup runs npm ci)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True,
                   stdin=subprocess.DEVNULL, timeout=300)


class OpenIDProvider:
    """``node tests/interop/provider.mjs`` on a fixed loopback port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.issuer = ""
        self.kid = ""

    def start(self, kid: str) -> "OpenIDProvider":
        node = shutil.which("node")
        if node is None:
            raise harness.Missing("node is missing: install Node.js 20+")
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [node, "provider.mjs", "--port", str(self.port), "--kid", kid,
                 "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                 "--redirect-uri", REDIRECT_URI],
                cwd=INTEROP, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the ready line, or EOF if it died
        if not line:
            raise RuntimeError(f"oidc-provider did not start:\n{self.log.read_text()[-2000:]}")
        ready = json.loads(line)
        self.issuer, self.kid = ready["issuer"], ready["kid"]
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # we follow redirects by hand
        return None


def authorization_code_flow(issuer: str, login: str = "pupil-1") -> str:
    """A real ID token: /auth, the login and consent forms, the code, /token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())

    def call(url: str, form: dict | None = None, headers: dict | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with opener.open(urllib.request.Request(url, data, headers or {}), timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    state = secrets.token_urlsafe(12)
    url = issuer + "/auth?" + urllib.parse.urlencode({
        "client_id": CLIENT_ID, "response_type": "code", "scope": "openid",
        "redirect_uri": REDIRECT_URI, "state": state, "nonce": secrets.token_urlsafe(12)})
    form: dict | None = None
    trail = []
    for _ in range(12):
        status, headers, body = call(url, form)
        trail.append(f"{status} {url.split('?')[0]}")
        location = headers.get("location")
        if status in (302, 303) and location:
            location = urllib.parse.urljoin(url, location)
            if location.startswith(REDIRECT_URI):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
                assert query.get("state") == [state], query
                code = query["code"][0]
                break
            url, form = location, None
            continue
        assert status == 200, f"{trail}: {body[:300]!r}"
        page = body.decode()
        # The provider's own interaction forms: login (any user), then consent.
        action = re.search(r'<form[^>]*action="([^"]+)"', page)
        prompt = re.search(r'name="prompt" value="([^"]+)"', page)
        assert action and prompt, f"no interaction form after {trail}"
        url = urllib.parse.urljoin(url, action.group(1))
        form = {"prompt": prompt.group(1)}
        if prompt.group(1) == "login":
            form.update(login=login, password="anything")
    else:
        raise AssertionError(f"the flow did not reach the redirect URI: {trail}")
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    status, _, body = call(issuer + "/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        {"Authorization": f"Basic {basic}"})
    assert status == 200, body
    return json.loads(body)["id_token"]


def header_of(token: str) -> dict:
    return json.loads(harness.b64url_decode(token.split(".")[0]))


def plugin_config(issuer: str) -> dict:
    """Only the issuer URL and the client id: everything else is discovered."""
    return {
        "issuers": [{"issuer": issuer, "discovery": {"cluster": "op"},
                     "key_fetch": {"initial_wait": "3s"}}],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "providers": {"interop": {"audiences": [CLIENT_ID],
                                  "match": {"path_prefixes": ["/shop/"]}}},
    }


@pytest.fixture
def op(tmp_path):
    ensure_node_modules()
    provider = OpenIDProvider(harness._ephemeral_port(), tmp_path / "oidc-provider.log")
    yield provider
    provider.stop()


def test_real_openid_provider_tokens_pass_tampered_fail_and_rotation_needs_no_restart(
        op, upstream, tmp_path):
    op.start(kid="interop-key-1")
    assert op.issuer == f"http://127.0.0.1:{op.port}"
    guard = Envoy(upstream.port, plugin_config(op.issuer), workdir=tmp_path / "envoy",
                  clusters=[static_cluster("op", op.port)])
    guard.start()
    try:
        token = authorization_code_flow(op.issuer)
        assert (header_of(token)["alg"], header_of(token)["kid"]) == ("RS256", "interop-key-1")

        resp = guard.send(PROTECTED, [("Authorization", f"Bearer {token}")])
        assert resp.status == 200, f"{resp.status} {resp.body!r}\n{guard.log_tail()}"
        rec = upstream.only()
        assert rec.path == PROTECTED
        assert rec.values("authorization") == []
        assert all(token.rsplit(".", 1)[1] not in v for _, v in rec.headers)

        upstream.clear()
        tampered = with_payload(token, sub="someone-else")
        resp = guard.send(PROTECTED, [("Authorization", f"Bearer {tampered}")])
        assert resp.status == 401
        assert resp.json() == {"error": "invalid_token", "reason": "bad_signature"}
        assert upstream.received() == []

        # Rotation: same issuer URL, a fresh signing key, Envoy untouched.
        op.stop()
        op.start(kid="interop-key-2")
        upstream.clear()
        rotated = authorization_code_flow(op.issuer)
        assert header_of(rotated)["kid"] == "interop-key-2"
        resp = guard.send(PROTECTED, [("Authorization", f"Bearer {rotated}")])
        assert resp.status == 200, f"{resp.status} {resp.body!r}\n{guard.log_tail()}"
        assert upstream.only().values("authorization") == []
        assert "usable key(s)" in guard.log()

        # The old key left the provider's key set with the rotation.
        upstream.clear()
        resp = guard.send(PROTECTED, [("Authorization", f"Bearer {token}")])
        assert resp.status == 401
        assert resp.json()["reason"] == "unknown_key"
        assert upstream.received() == []
    finally:
        guard.stop()
