"""Userinfo through the real Envoy: the ID token in the oauth2 filter's
``IdToken`` cookie carries no attributes, the access token in ``BearerToken``
opens a userinfo endpoint the test controls (``userinfo_server``), and the
recording upstream shows what the app would get.

Asserted on the upstream's record: the contracted attributes come from
userinfo only, no token and no session cookie arrives, a session costs one
userinfo call however many requests it makes; and on the client's replies:
an outage or a slow endpoint is 503 with ``Retry-After``, a refused access
token sends a browser back to login (302, session cookies cleared) and is
401 for an API client.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

import harness
from harness import Envoy, key_path, mint, static_cluster
from jwks_server import KeyServer
from userinfo_server import UserinfoServer

ISS = "https://mpass-proxy-test.csc.fi"
ISS_LABEL = "mpass-proxy-test_csc_fi"
AUD = "legacy-app"
UID = "MPASSOID.e2e-userinfo-learner"
PAGE = "/app/grades?term=2"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def config(server: UserinfoServer, timeout: str = "500ms") -> dict[str, Any]:
    return {
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": harness.jwks((key_path("rsa-a.pem"), "rsa-a", "RS256"))},
            "allowed_algorithms": ["RS256"],
            "userinfo": {"endpoint": server.endpoint, "cluster": "op", "timeout": timeout},
        }],
        "from_cookies": ["IdToken"],
        "header_prefix": "x-mpass-",
        "providers": {"app": {
            "audiences": [AUD],
            "match": {"path_prefixes": ["/app/"]},
            "login": {},
            "contract": {
                "organisations": ["1.2.246.562.10.00000000001"],
                "required": ["uid"],
                "release": {"uid": {}, "given_name": {"header": "x-app-first-name"}},
            },
        }},
    }


def session() -> tuple[str, str, str]:
    """A new session: its subject, ID token (no attributes) and access token."""
    sub = "pairwise-" + secrets.token_hex(8)
    id_token = mint(key_path("rsa-a.pem"), "RS256",
                    {"iss": ISS, "aud": AUD, "sub": sub, "nonce": "n-1"}, kid="rsa-a")
    return sub, id_token, "at-" + secrets.token_urlsafe(24)


def attributes(sub: str) -> dict[str, Any]:
    """What userinfo knows of the learner (MPASSid claim names)."""
    return {
        "sub": sub,
        "given_name": "Aino",
        "urn:mpass.id:uid": UID,
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": "1.2.246.562.24.20000000018",
        "urn:mpass.id:role": ["1.2.246.562.10.00000000001;30076;9F;Oppilas;1;;"],
        "urn:mpass.id:educationProviderInfo": ["1.2.246.562.10.00000000001;Testikunta"],
    }


def cookies(id_token: str, access: str | None) -> list[tuple[str, str]]:
    jar = f"theme=dark; IdToken={id_token}"
    if access is not None:
        jar += f"; BearerToken={access}; OauthHMAC=hmac-value; OauthExpires=1999999999"
    return [("Cookie", jar)]


def stat(envoy: Envoy, name: str, want: int) -> int:
    """The counter once it reads `want` (counters reach Envoy on the filter's tick), else its value."""
    key = f"wasmcustom.mpass_guard.{name}"
    return int(envoy.wait_stats(lambda s: int(s.get(key, "0")) == want).get(key, "0"))


@pytest.fixture
def op():
    server = UserinfoServer()
    yield server
    server.stop()


@pytest.fixture
def guard(upstream, op, tmp_path):
    started: list[Envoy] = []

    def start(**kw: Any) -> Envoy:
        envoy = Envoy(upstream.port, config(op, **kw), workdir=tmp_path / str(len(started)),
                      clusters=[static_cluster("op", op.port, connect_timeout="0.25s")])
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()


def test_the_app_gets_userinfo_attributes_from_one_call_and_never_a_token(upstream, op, guard):
    envoy = guard()
    sub, id_token, access = session()
    op.grant(access, attributes(sub))
    for _ in range(5):
        r = envoy.send(PAGE, cookies(id_token, access) + [("Accept", BROWSER)])
        assert r.status == 200, (r.status, r.body, envoy.log_tail())
    assert op.calls == [f"Bearer {access}"], "one userinfo call for the session"
    assert len(upstream.received()) == 5
    for rec in upstream.received():
        # The attributes came from userinfo only: the ID token has none.
        assert rec.value("x-mpass-uid") == UID
        assert rec.value("x-app-first-name") == "Aino"
        assert rec.cookies() == [("theme", "dark")]
        everything = " ".join(f"{k}: {v}" for k, v in rec.headers)
        assert access not in everything and id_token not in everything
        assert "1.2.246.562.24.20000000018" not in everything, "an uncontracted attribute leaked"
    assert stat(envoy, f"userinfo_calls.stat_prefix=main.issuer={ISS_LABEL}", 1) == 1


def test_an_outage_or_a_slow_endpoint_is_503_with_retry_after(upstream, op, guard):
    envoy = guard(timeout="300ms")
    sub, id_token, access = session()
    op.grant(access, attributes(sub))
    op.status(503)
    r = envoy.send(PAGE, cookies(id_token, access))
    assert r.status == 503, (r.status, r.body)
    assert r.json() == {"error": "temporarily_unavailable", "reason": "userinfo_unavailable"}
    assert (r.header("retry-after") or "").isdigit()
    op.status(None)
    op.slow(1.0)
    r = envoy.send(PAGE, cookies(id_token, access))
    assert r.status == 503, (r.status, r.body)
    assert upstream.received() == [], "nothing is released without userinfo"
    failures = f"userinfo_failures.stat_prefix=main.issuer={ISS_LABEL}.reason=userinfo_unavailable"
    assert stat(envoy, failures, 2) == 2
    # The endpoint is back: the same session tries again and passes.
    op.slow(0)
    r = envoy.send(PAGE, cookies(id_token, access))
    assert r.status == 200, (r.status, r.body)
    assert upstream.only().value("x-mpass-uid") == UID


def test_a_refused_access_token_restarts_a_browser_login_and_is_401_for_an_api(upstream, op, guard):
    envoy = guard()
    _, id_token, access = session()  # never granted: the OP answers 401
    r = envoy.send(PAGE, cookies(id_token, access) + [("Accept", BROWSER)])
    assert r.status == 302, (r.status, r.body, envoy.log_tail())
    assert r.header("location") == PAGE
    assert r.header("cache-control") == "no-store"
    set_cookies = [v for k, v in r.headers if k.lower() == "set-cookie"]
    cleared = {c.split("=", 1)[0] for c in set_cookies if "Max-Age=0" in c}
    assert {"BearerToken", "IdToken", "RefreshToken", "OauthHMAC", "OauthExpires"} <= cleared
    assert any(c.startswith("MpassGuardLogin=") for c in set_cookies)
    assert stat(envoy, "login_restarts.stat_prefix=main.provider=app", 1) == 1

    _, id_token, access = session()
    r = envoy.send(PAGE, cookies(id_token, access) + [("Accept", "application/json")])
    assert r.status == 401, (r.status, r.body)
    assert r.json() == {"error": "invalid_token", "reason": "userinfo_refused"}
    assert "userinfo_refused" in (r.header("www-authenticate") or "")
    assert upstream.received() == []


def test_a_browser_without_a_session_is_sent_to_login_and_a_loop_shows_a_page(upstream, op, guard):
    envoy = guard()
    r = envoy.send(PAGE, [("Accept", BROWSER)])
    assert r.status == 302 and r.header("location") == PAGE
    r = envoy.send(PAGE, [("Accept", BROWSER), ("Cookie", "MpassGuardLogin=1")])
    assert r.status == 401
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("content-security-policy") == "default-src 'none'"
    assert b"did not complete" in r.body
    assert op.calls == [] and upstream.received() == []


def test_discovery_names_the_endpoint_and_a_request_resumed_after_a_key_refetch_gets_its_call(
        upstream, op, tmp_path):
    """The endpoint comes from discovery; the session's token is signed with
    a key the first key set lacks, so its request waits for the refetch and
    is decided again from the root context, which then makes the call."""
    ks = KeyServer(harness.jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")))
    ks.userinfo_endpoint(op.endpoint).up()
    try:
        issuer = ks.base_url
        cfg = config(op)
        cfg["issuers"][0] = {
            "issuer": issuer,
            "allowed_algorithms": ["RS256"],
            "discovery": {"cluster": "jwks", "timeout": "500ms"},
            "key_fetch": {"initial_wait": "2s", "refetch_interval": "1s"},
            "userinfo": {"cluster": "op"},
        }
        envoy = Envoy(upstream.port, cfg, workdir=tmp_path / "disc",
                      clusters=[static_cluster("op", op.port), static_cluster("jwks", ks.port)])
        envoy.start()
        try:
            ks.wait_for("/jwks", 1)
            # Every VM holds the first key set before the rotation, so the
            # worker's request itself finds the kid unknown and waits.
            envoy.wait_key_sets(issuer)
            ks.serve(harness.jwks((key_path("rsa-a.pem"), "rsa-a", "RS256"),
                                  (key_path("rsa-b.pem"), "rsa-b", "RS256")))
            sub = "pairwise-" + secrets.token_hex(8)
            id_token = mint(key_path("rsa-b.pem"), "RS256",
                            {"iss": issuer, "aud": AUD, "sub": sub}, kid="rsa-b")
            access = "at-" + secrets.token_urlsafe(24)
            op.grant(access, attributes(sub))
            r = envoy.send(PAGE, cookies(id_token, access))
            assert r.status == 200, (r.status, r.body, envoy.log_tail())
            assert upstream.only().value("x-mpass-uid") == UID
            assert op.calls == [f"Bearer {access}"]
        finally:
            envoy.stop()
    finally:
        ks.stop()
