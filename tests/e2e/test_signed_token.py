"""The gateway-signed token (issue 13) in the real Envoy, judged by what the
UPSTREAM received and by two JOSE libraries nobody here wrote.

One Envoy runs mpass-guard with a `gateway` block (issuer
`http://127.0.0.1:<envoy port>`, an Ed25519 key that signs) and two
providers with `contract.signed_token`:

- ``studeo`` (path ``/shop/``): names, uid, roles and schools of one
  organisation, the token in ``x-mpass-token``;
- ``library`` (path ``/library/``): uid only, the token as
  ``Authorization: Bearer``.

The verifiers (``jose`` from npm, PyJWT with ``cryptography``) fetch the
gateway's discovery document and JWKS over HTTP THROUGH ENVOY, which answers
them itself, and check signature, ``iss``, ``aud`` and ``exp``. Rotation
restarts Envoy on the same port with a new key set, as an operator would.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import harness
from conftest import ISS_MAIN, issuer
from harness import Envoy, b64url, b64url_decode, jwks, key_path, mint
from test_signed_token_verifiers import VERIFIERS, run_verifier

FIXTURES = harness.REPO / "tests" / "fixtures" / "claims"
MANSIKKALA = "1.2.246.562.10.00000000001"
AUD_STUDEO = "studeo-webshop"
AUD_LIBRARY = "library-app"
JWKS_PATH = "/.well-known/mpass-guard/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
REGISTERED = {"iss", "aud", "sub", "iat", "exp", "jti", "contract_version"}
OLD_KEY = key_path("ed25519.pem").read_text()


def fresh_ed25519_pem() -> str:
    """A new Ed25519 key, PKCS#8 PEM: the successor in the rotation."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


NEW_KEY = fresh_ed25519_pem()
ENV = {
    "GW_KEY_OLD": OLD_KEY,
    "GW_KEY_NEW": NEW_KEY,
    "GW_PAIRWISE": "e2e-gateway-pairwise-key-0123456789abcdef",
}


def key(kid: str, env: str, sign: bool) -> dict:
    return {"kid": kid, "alg": "EdDSA", "private_key_env": env, "sign": sign}


def config(port: int, keys: list[dict]) -> dict:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "gateway": {
            "issuer": f"http://127.0.0.1:{port}",
            "hosts": [f"127.0.0.1:{port}"],
            "keys": keys,
            "pairwise_key_env": "GW_PAIRWISE",
        },
        "providers": {
            "studeo": {
                "audiences": [AUD_STUDEO],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": {
                    "organisations": [MANSIKKALA],
                    "required": ["uid"],
                    "release": {"uid": {}, "given_name": {}, "role": {}, "school_info": {}},
                    "signed_token": {},
                },
            },
            "library": {
                "audiences": [AUD_LIBRARY],
                "match": {"path_prefixes": ["/library/"]},
                "contract": {
                    "organisations": ["*"],
                    "release": {"uid": {}},
                    "signed_token": {"header": "authorization", "lifetime": "120s"},
                },
            },
        },
    }


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    harness.require_wasm()
    envoy = Envoy(upstream.port, None, env=ENV, workdir=tmp_path_factory.mktemp("signed"))
    envoy.plugin_config = config(envoy.port, [key("ed-old", "GW_KEY_OLD", True)])
    envoy.start()
    yield envoy
    envoy.stop()


def restart(envoy: Envoy, keys: list[dict]) -> None:
    envoy.stop()
    envoy.plugin_config = config(envoy.port, keys)
    envoy.start()


def teacher() -> dict:
    claims = json.loads((FIXTURES / "teacher-two-providers-1.4.json").read_text())
    return {k: v for k, v in claims.items() if not k.startswith("_")}


def mpassid_token(aud: str = AUD_STUDEO) -> str:
    return mint(key_path("rsa-a.pem"), "RS256", dict(teacher(), aud=aud), kid="rsa-a")


def minted_at_upstream(envoy, upstream, path="/shop/page", token=None, aud=AUD_STUDEO) -> str:
    upstream.clear()
    token = token or mpassid_token(aud)
    r = envoy.send(path, [("Authorization", f"Bearer {token}")])
    assert r.status == 200, r.body
    rec = upstream.only()
    if path.startswith("/library/"):
        value = rec.value("authorization")
        assert value and value.startswith("Bearer "), value
        minted = value.removeprefix("Bearer ")
    else:
        minted = rec.value("x-mpass-token")
        # The MPASSid token itself never reaches the upstream.
        assert rec.value("authorization") is None
    assert minted and minted != token
    assert token not in json.dumps(rec.headers)
    return minted


def claims_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def issuer_of(envoy: Envoy) -> str:
    return f"http://127.0.0.1:{envoy.port}"


def accepted(verifier, envoy, audience, token) -> dict:
    r = run_verifier(verifier, {"issuer": issuer_of(envoy)}, audience, token)
    assert r.returncode == 0, f"{verifier} refused: {r.stderr}\n{envoy.log_tail()}"
    printed = json.loads(r.stdout)
    return printed["claims"] if verifier == "jose" else printed


def refused(verifier, envoy, audience, token) -> str:
    r = run_verifier(verifier, {"issuer": issuer_of(envoy)}, audience, token)
    assert r.returncode == 1, f"{verifier} accepted (rc {r.returncode}): {r.stdout}"
    return r.stderr.lower()


def test_envoy_answers_the_jwks_and_discovery_itself_with_cache_headers(gw, upstream):
    upstream.clear()
    host = [("Host", f"127.0.0.1:{gw.port}")]
    d = gw.send(DISCOVERY_PATH, host)
    assert d.status == 200, d.body
    assert d.header("cache-control") == "public, max-age=300"
    assert d.header("content-type") == "application/json"
    doc = d.json()
    assert doc["issuer"] == issuer_of(gw)
    assert doc["jwks_uri"] == issuer_of(gw) + JWKS_PATH
    assert doc["id_token_signing_alg_values_supported"] == ["EdDSA"]
    j = gw.send(JWKS_PATH + "?x=1", host)
    assert j.status == 200 and j.header("cache-control") == "public, max-age=300"
    keys = j.json()["keys"]
    assert [k["kid"] for k in keys] == ["ed-old"]
    assert all("d" not in k for k in keys)
    head = gw.send(JWKS_PATH, host, method="HEAD")
    assert head.status == 200 and head.body == b""
    # None of it reached the upstream.
    assert upstream.received() == []


def test_other_hosts_and_methods_on_those_paths_belong_to_the_upstream(gw, upstream):
    upstream.clear()
    r = gw.send(JWKS_PATH, [("Host", "shop.example.fi")])
    assert r.status == 200 and upstream.only().path == JWKS_PATH
    upstream.clear()
    r = gw.send(DISCOVERY_PATH, [("Host", f"127.0.0.1:{gw.port}")], method="POST", body=b"{}")
    assert r.status == 200 and upstream.only().method == "POST"


def test_the_upstream_receives_a_token_with_exactly_the_released_claims(gw, upstream):
    minted = minted_at_upstream(gw, upstream)
    claims = claims_of(minted)
    source = teacher()
    released = {k: v for k, v in claims.items() if k not in REGISTERED}
    # Only what the contract releases, under the MPASSid claim names...
    assert sorted(released) == sorted([
        "given_name", "urn:mpass.id:uid", "urn:mpass.id:role", "urn:mpass.id:schoolInfo"])
    # ...filtered value by value: the other organisation's role and school
    # are gone, and schools are OPH OIDs only (identifier_form "oid").
    assert released["urn:mpass.id:role"] == [
        source["urn:mpass.id:role"][0].replace(";30076;", ";;")]
    assert released["urn:mpass.id:schoolInfo"] == [source["urn:mpass.id:schoolInfo"][1]]
    assert released["given_name"] == source["given_name"]
    # Nothing the contract withheld: no family name, learner number, charges...
    for withheld in set(source) - set(released) - {"sub"}:
        assert withheld not in claims or withheld in REGISTERED, withheld
    assert claims["iss"] == issuer_of(gw) and claims["aud"] == AUD_STUDEO
    assert claims["sub"] != source["sub"]  # pairwise
    assert claims["exp"] - claims["iat"] == 300
    header = json.loads(b64url_decode(minted.split(".")[0]))
    assert header == {"alg": "EdDSA", "kid": "ed-old", "typ": "JWT"}
    # The same MPASSid token gets the cached minted token, not a new one.
    token = mpassid_token()
    assert minted_at_upstream(gw, upstream, token=token) == \
        minted_at_upstream(gw, upstream, token=token)


def test_a_client_supplied_token_header_never_reaches_the_upstream(gw, upstream):
    upstream.clear()
    r = gw.send("/shop/page", [("Authorization", f"Bearer {mpassid_token()}"),
                                ("X-Mpass-Token", "forged.by.client")])
    assert r.status == 200
    assert upstream.only().values("x-mpass-token") != ["forged.by.client"]
    assert len(upstream.only().values("x-mpass-token")) == 1
    # Refused requests do not carry it either: they never reach the upstream.
    upstream.clear()
    r = gw.send("/shop/page", [("X-Mpass-Token", "forged.by.client")])
    assert r.status == 401 and upstream.received() == []


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_both_verifiers_accept_the_token_fetching_keys_through_envoy(gw, upstream, verifier):
    minted = minted_at_upstream(gw, upstream)
    claims = accepted(verifier, gw, AUD_STUDEO, minted)
    assert claims == claims_of(minted)
    bearer = minted_at_upstream(gw, upstream, path="/library/x", aud=AUD_LIBRARY)
    assert accepted(verifier, gw, AUD_LIBRARY, bearer)["aud"] == AUD_LIBRARY


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_tampered_token_is_refused(gw, upstream, verifier):
    h, p, s = minted_at_upstream(gw, upstream).split(".")
    claims = json.loads(b64url_decode(p))
    claims["urn:mpass.id:role"].append("1.2.246.562.10.00000000004;04647;;Rehtori;6;;")
    tampered = f"{h}.{b64url(json.dumps(claims).encode())}.{s}"
    assert "signature" in refused(verifier, gw, AUD_STUDEO, tampered)


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_token_minted_for_another_providers_audience_is_refused(gw, upstream, verifier):
    library = minted_at_upstream(gw, upstream, path="/library/x", aud=AUD_LIBRARY)
    assert "aud" in refused(verifier, gw, AUD_STUDEO, library)


def test_rotation_the_previous_key_verifies_while_published_and_not_after(gw, upstream):
    old = minted_at_upstream(gw, upstream)
    try:
        # The new key signs; the old one is still published.
        restart(gw, [key("ed-new", "GW_KEY_NEW", True), key("ed-old", "GW_KEY_OLD", False)])
        new = minted_at_upstream(gw, upstream)
        assert json.loads(b64url_decode(new.split(".")[0]))["kid"] == "ed-new"
        for verifier in VERIFIERS:
            accepted(verifier, gw, AUD_STUDEO, old)
            accepted(verifier, gw, AUD_STUDEO, new)
        # The old key is removed: its tokens stop verifying, the new ones do not.
        restart(gw, [key("ed-new", "GW_KEY_NEW", True)])
        for verifier in VERIFIERS:
            assert "key" in refused(verifier, gw, AUD_STUDEO, old)
            accepted(verifier, gw, AUD_STUDEO, new)
    finally:
        restart(gw, [key("ed-old", "GW_KEY_OLD", True)])
