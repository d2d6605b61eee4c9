"""Fixtures for the real-Envoy tests.

One recording upstream and one Envoy running mpass-guard serve the whole
session (Envoy starts in about a second, but there are many tests); the
upstream's record is cleared before each test. Tests that need another plugin
configuration start their own Envoy with ``harness.Envoy``.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402
from harness import Envoy, Upstream, jwks, key_path  # noqa: E402

# Issuers of the test configuration. Each allow-list is as narrow as its key.
ISS_MAIN = "https://mpass-proxy-test.csc.fi"  # RS256 (rsa-a) and HS256 (provider secret)
ISS_RS_ONLY = "https://rs-only.mpass-guard.test"  # RS256 (rsa-a) only
ISS_PS = "https://ps.mpass-guard.test"  # PS256 (rsa-b)
ISS_ES = "https://es.mpass-guard.test"  # ES256 (ec-p256)
ISS_ED = "https://ed.mpass-guard.test"  # EdDSA (ed25519)

AUD_STUDEO = "studeo-webshop"
AUD_LIBRARY = "library-app"
STUDEO_SECRET_ENV = "STUDEO_CLIENT_SECRET"

# A fresh HS256 client secret per session; it reaches the VM as
# vm_config.environment_variables.key_values.
STUDEO_SECRET = secrets.token_urlsafe(32)

STRIP_HEADERS = ["x-forwarded-user", "x-userinfo", "x-id-token", "x-auth-request-*"]


def issuer(iss: str, keyset: str, algs: list[str]) -> dict[str, Any]:
    return {
        "issuer": iss,
        "local_jwks": {"inline_string": keyset},
        "allowed_algorithms": algs,
        "clock_skew_seconds": 60,
        "max_lifetime_seconds": 86400,
        "require_expiration": True,
    }


def plugin_config() -> dict[str, Any]:
    """The mpass-guard configuration every default-Envoy test runs against."""
    rsa_a = jwks((key_path("rsa-a.pem"), "rsa-a", "RS256"))
    return {
        "issuers": [
            issuer(ISS_MAIN, rsa_a, ["RS256", "HS256"]),
            issuer(ISS_RS_ONLY, rsa_a, ["RS256"]),
            issuer(ISS_PS, jwks((key_path("rsa-b.pem"), "rsa-b", "PS256")), ["PS256"]),
            issuer(ISS_ES, jwks((key_path("ec-p256.pem"), "ec-p256", "ES256")), ["ES256"]),
            issuer(ISS_ED, jwks((key_path("ed25519.pem"), "ed25519", "EdDSA")), ["EdDSA"]),
        ],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_cookies": ["id_token"],
        "from_params": ["id_token"],
        "header_prefix": "x-mpass-",
        "strip_headers": STRIP_HEADERS,
        "max_token_bytes": 16384,
        "realm": "mpass-guard",
        "providers": {
            "studeo": {
                "audiences": [AUD_STUDEO],
                "match": {"path_prefixes": ["/shop/"]},
                "hs_secret_env": STUDEO_SECRET_ENV,
            },
            "library": {
                "audiences": [AUD_LIBRARY],
                "match": {"route_names": ["library-route"]},
            },
        },
    }


@pytest.fixture(scope="session")
def upstream():
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="session")
def guard(upstream, tmp_path_factory):
    """Envoy with mpass-guard in front of the recording upstream."""
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    envoy = Envoy(upstream.port, plugin_config(), env={STUDEO_SECRET_ENV: STUDEO_SECRET},
                  workdir=tmp_path_factory.mktemp("guard"))
    envoy.start()
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_record(request):
    """Each test sees only its own requests at the upstream."""
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").clear()
    yield


def pytest_report_header(config):
    return [f"envoy: {harness.ENVOY_BIN}", f"wasm: {harness.WASM}", f"cli: {harness.CLI}"]
