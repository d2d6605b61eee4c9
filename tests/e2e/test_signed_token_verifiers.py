"""The independent verifiers of the gateway-signed token (issue 13), natively.

`examples/gateway_tokens.rs` mints tokens with mpass-guard's `signing` and
`minted` modules; this test serves their discovery documents and JWKS from a
local HTTP server and hands each token to two JOSE libraries nobody here
wrote: `jose` (npm, tests/interop/verify_jose.mjs) and PyJWT with
`cryptography` (tests/e2e/verify_pyjwt.py). Each fetches discovery and JWKS
over HTTP and checks signature, `iss`, `aud` and `exp`.

The same verifiers run against Envoy once the gateway's documents are served
by the filter; here they are checked on their own, so a refusal there means
the filter, not the verifier.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOSE = ROOT / "tests" / "interop" / "verify_jose.mjs"
PYJWT = ROOT / "tests" / "e2e" / "verify_pyjwt.py"
AUD = "studeo-client"


class Documents:
    """A local HTTP server answering a mutable map of path -> JSON document."""

    def __init__(self):
        self.docs: dict[str, bytes] = {}
        docs = self.docs

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = docs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, site: dict) -> None:
        self.docs[site["discovery_path"]] = json.dumps(site["discovery"]).encode()
        self.docs[site["jwks_path"]] = json.dumps(site["jwks"]).encode()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def minted():
    docs = Documents()
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--example", "gateway_tokens", "--", docs.base],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for name in ("es256", "eddsa", "rs256", "rot-before"):
        docs.publish(data["sites"][name])
    yield docs, data
    docs.stop()


def run_verifier(verifier: str, site: dict, audience: str, token: str) -> subprocess.CompletedProcess:
    discovery_url = site["issuer"] + "/.well-known/openid-configuration"
    cmd = {
        "jose": ["node", str(JOSE)],
        "pyjwt": [sys.executable, str(PYJWT)],
    }[verifier] + [discovery_url, site["issuer"], audience, token]
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)


def accepted(verifier: str, site: dict, audience: str, token: str) -> dict:
    r = run_verifier(verifier, site, audience, token)
    assert r.returncode == 0, f"{verifier} refused: {r.stderr}"
    printed = json.loads(r.stdout)
    return printed["claims"] if verifier == "jose" else printed


def refused(verifier: str, site: dict, audience: str, token: str) -> str:
    r = run_verifier(verifier, site, audience, token)
    assert r.returncode == 1, f"{verifier} accepted (rc {r.returncode}): {r.stdout}"
    return r.stderr


VERIFIERS = ["jose", "pyjwt"]


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize("alg", ["es256", "eddsa", "rs256"])
def test_a_good_token_is_accepted_with_exactly_the_minted_claims(minted, verifier, alg):
    _, data = minted
    site = data["sites"][alg]
    claims = accepted(verifier, site, AUD, data["tokens"][alg]["token"])
    assert claims["iss"] == site["issuer"]
    assert claims["aud"] == AUD
    assert claims["given_name"] == "Maija"
    assert claims["urn:mpass.id:schoolCode"] == ["00001"]
    assert claims["contract_version"] == "example-contract-v1"
    # Pairwise: not the MPASSid subject.
    assert claims["sub"] != "MPASSOID.c5fe0bd0dcb09e1e0d7e2f"
    assert sorted(claims) == sorted(
        ["iss", "aud", "sub", "iat", "exp", "jti", "contract_version",
         "given_name", "urn:mpass.id:schoolCode"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_tampered_token_is_refused(minted, verifier):
    _, data = minted
    token = data["tokens"]["eddsa"]["token"]
    header, payload, sig = token.split(".")
    claims = json.loads(unb64(payload))
    claims["given_name"] = "Matti"
    tampered = ".".join([header, b64(json.dumps(claims).encode()), sig])
    assert "signature" in refused(verifier, data["sites"]["eddsa"], AUD, tampered).lower()
    # A signature from another token does not fit either.
    other_sig = data["tokens"]["eddsa-shop"]["token"].split(".")[2]
    why = refused(verifier, data["sites"]["eddsa"], AUD, ".".join([header, payload, other_sig]))
    assert "signature" in why.lower()


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_token_for_another_providers_audience_is_refused(minted, verifier):
    _, data = minted
    shop = data["tokens"]["eddsa-shop"]
    site = data["sites"]["eddsa"]
    assert "aud" in refused(verifier, site, AUD, shop["token"]).lower()
    # The same token is good for its own audience: the refusal was the audience.
    assert accepted(verifier, site, shop["aud"], shop["token"])["aud"] == "shop-client"


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_an_expired_token_is_refused(minted, verifier):
    _, data = minted
    why = refused(verifier, data["sites"]["eddsa"], AUD, data["tokens"]["eddsa-expired"]["token"])
    assert "exp" in why.lower()


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_token_checked_against_another_gateway_issuer_is_refused(minted, verifier):
    _, data = minted
    site = dict(data["sites"]["eddsa"])
    token = data["tokens"]["eddsa"]["token"]
    # The verifier trusts the es256 gateway: the eddsa token is not its own.
    wrong = dict(site, issuer=data["sites"]["es256"]["issuer"])
    r = run_verifier(verifier, wrong, AUD, token)
    assert r.returncode == 1, r.stdout


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_rotation_a_previous_key_verifies_while_published_and_not_after(minted, verifier):
    docs, data = minted
    sites, tokens = data["sites"], data["tokens"]
    old, new = tokens["rot-old"]["token"], tokens["rot-new"]["token"]
    try:
        docs.publish(sites["rot-before"])
        accepted(verifier, sites["rot-before"], AUD, old)
        # The new key signs, the old one is still published: both verify.
        docs.publish(sites["rot-during"])
        accepted(verifier, sites["rot-during"], AUD, old)
        accepted(verifier, sites["rot-during"], AUD, new)
        # The old key is removed: its tokens stop verifying, the new ones do not.
        docs.publish(sites["rot-after"])
        assert "key" in refused(verifier, sites["rot-after"], AUD, old).lower()
        accepted(verifier, sites["rot-after"], AUD, new)
    finally:
        docs.publish(sites["rot-before"])
